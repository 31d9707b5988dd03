"""The Predator-Prey GIF renderer: frame count, size, and captures that match the rewards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import ddn
from ddn.analysis.render import COLOURS, render_predator_prey
from ddn.envs.base import EnvOutput

CATCH = 5
SMALL = {"n_agents": 3, "n_prey": 2, "height": 5, "width": 5, "episode_limit": 12}


def _frames_rgb(path: Path) -> list[Image.Image]:
    with Image.open(path) as im:
        frames = []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(im.convert("RGB"))
    return frames


def _has_colour(img: Image.Image, rgb: tuple[int, int, int]) -> bool:
    colours = img.getcolors(maxcolors=img.width * img.height) or []
    return any(c == rgb for _, c in colours)


def _catch_first(out: EnvOutput) -> torch.Tensor:
    """Deterministic: catch whenever possible, else the lowest-numbered available action."""
    avail = out.avail
    score = avail.float() * -torch.arange(avail.shape[-1], dtype=torch.float32)
    score = score.masked_fill(~avail, -100.0)
    score[..., CATCH] = torch.where(avail[..., CATCH], 1.0, -100.0)
    return score.argmax(dim=-1)


def test_random_episode_gif_is_animated_with_one_frame_per_state(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "episode.gif"
    info = render_predator_prey(path, seed=0, cell_px=20, **SMALL)
    assert path.exists() and info["path"] == str(path)
    assert info["steps"] == 12  # a random policy never finishes this small world early
    assert info["truncated"] and not info["terminated"]
    with Image.open(path) as im:
        assert im.format == "GIF"
        assert im.is_animated
        assert im.n_frames == info["steps"] + 1 == info["frames"]
        assert im.size == info["size"] == (5 * 20 + 1, 24 + 5 * 20 + 1)
    # Every live predator and prey is drawn.
    assert all(_has_colour(f, COLOURS["predator"]) for f in _frames_rgb(path))


def test_max_steps_stops_early(tmp_path: Path) -> None:
    info = render_predator_prey(tmp_path / "short.gif", seed=1, max_steps=3, cell_px=16)
    assert info["steps"] == 3
    with Image.open(tmp_path / "short.gif") as im:
        assert im.n_frames == 4
        assert im.size == (10 * 16 + 1, 24 + 10 * 16 + 1)


def test_random_policy_is_seeded(tmp_path: Path) -> None:
    a = render_predator_prey(tmp_path / "a.gif", seed=5, **SMALL)
    b = render_predator_prey(tmp_path / "b.gif", seed=5, **SMALL)
    assert a["return"] == b["return"]
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()


def _seed_with_prey_in_the_middle() -> int:
    """A seed whose 1x3 world starts predator | prey | predator (a capture at step 1)."""
    for seed in range(200):
        env = ddn.envs.make("predator_prey", seed=seed, n_agents=2, n_prey=1, height=1, width=3)
        env.reset()
        if int(env.prey_cell[0, 0]) == 1:
            return seed
    raise AssertionError("no seed puts the prey in the middle")


def test_scripted_capture_is_shown(tmp_path: Path) -> None:
    seed = _seed_with_prey_in_the_middle()
    params = {"n_agents": 2, "n_prey": 1, "height": 1, "width": 3}
    info = render_predator_prey(tmp_path / "cap.gif", policy=_catch_first, seed=seed, **params)
    assert info == {
        "steps": 1,
        "return": 10.0,
        "captures": 1,
        "miscaptures": 0,
        "terminated": True,
        "truncated": False,
        "frames": 2,
        "size": (3 * 40 + 1, 24 + 40 + 1),
        "path": str(tmp_path / "cap.gif"),
    }
    first, last = _frames_rgb(tmp_path / "cap.gif")
    assert not _has_colour(first, COLOURS["capture"])
    assert _has_colour(last, COLOURS["capture"])  # the flash on the prey's cell
    assert _has_colour(last, COLOURS["frozen"])  # both catchers greyed
    assert not _has_colour(last, COLOURS["predator"])  # ...and no live predator left


@pytest.mark.parametrize("punishment", [2.0, 3.0])
def test_markers_and_return_match_the_env_rewards(tmp_path: Path, punishment: float) -> None:
    params = {"n_agents": 6, "n_prey": 4, "height": 6, "width": 6, "punishment": punishment}
    path = tmp_path / "greedy.gif"
    info = render_predator_prey(path, policy=_catch_first, seed=2, cell_px=16, **params)
    # Replay the same episode without the renderer: the same rewards, step for step.
    env = ddn.envs.make("predator_prey", num_envs=1, seed=2, **params)
    out, total, steps = env.reset(), 0.0, 0
    while not bool(out.done[0]):
        out = env.step(_catch_first(out))
        total += float(out.reward[0])
        steps += 1
    assert info["steps"] == steps
    assert info["return"] == pytest.approx(total)
    assert info["captures"] >= 1 and info["miscaptures"] >= 1
    assert total == pytest.approx(10.0 * info["captures"] - punishment * info["miscaptures"])
    frames = _frames_rgb(path)
    assert len(frames) == steps + 1
    assert sum(_has_colour(f, COLOURS["capture"]) for f in frames) >= 1
    assert sum(_has_colour(f, COLOURS["miscapture"]) for f in frames) >= 1


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fps"):
        render_predator_prey(tmp_path / "x.gif", fps=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        render_predator_prey(tmp_path / "x.gif", n_agent=3)
