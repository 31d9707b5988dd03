"""Animated GIFs of one Predator-Prey episode, drawn with Pillow.

:func:`render_predator_prey` runs a single environment (``num_envs=1``) for one episode
and writes one GIF frame per state: frame 0 is the reset state, frame ``t`` the state
after step ``t``. Drawing happens directly in palette mode with a fixed palette, so no
colour quantization is needed and a 200-step episode renders in well under a second.

What a frame shows:

* a header: step ``t`` / episode limit, the cumulative return, captures so far, and the
  events of the step that led to this frame (``+10 capture``, ``-2 miss``);
* predators as blue circles labelled with their index; prey as red-orange diamonds;
* optionally (``show_view``) the cells inside any live predator's ``view x view``
  window, shaded pale blue;
* a capture: the captured prey's cell flashes yellow with a yellow ring around the prey,
  and the predators frozen by it are drawn grey with a yellow outline in that frame
  (the environment has already removed them; from the next frame on they are gone);
* a miscapture (a prey with exactly one catcher next to it): a magenta ring on the lone
  catcher and a magenta cross where the prey stood when the catch was attempted.

Captures and miscaptures are reconstructed from the environment's own state before and
after each step plus the random draws the step used (read, not changed), so the
markers agree exactly with the rewards: ``return == capture_reward * captures -
punishment * miscaptures``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from ddn.envs.base import EnvOutput
from ddn.envs.registry import make

Policy = Callable[[EnvOutput], torch.Tensor]

CATCH = 5  # Predator-Prey action index of "catch"

# Fixed palette: index -> RGB.
_PALETTE_RGB = [
    (255, 255, 255),  # 0 background
    (200, 200, 200),  # 1 grid lines
    (226, 236, 252),  # 2 predator view (faint)
    (40, 90, 220),  # 3 predator
    (235, 70, 30),  # 4 prey (red-orange)
    (255, 210, 0),  # 5 capture flash (yellow)
    (150, 150, 150),  # 6 frozen catcher (grey)
    (20, 20, 20),  # 7 text
    (220, 0, 200),  # 8 miscapture (magenta)
    (255, 255, 255),  # 9 label text on predators
    (255, 245, 190),  # 10 capture cell background (pale yellow)
    (245, 245, 245),  # 11 header background
]
BACKGROUND, GRID, VIEW, PREDATOR, PREY, FLASH, FROZEN, TEXT, MISS, LABEL, FLASH_BG, HEADER = range(
    len(_PALETTE_RGB)
)
#: RGB of the colours a test or a viewer may look for.
COLOURS = {
    "predator": _PALETTE_RGB[PREDATOR],
    "prey": _PALETTE_RGB[PREY],
    "capture": _PALETTE_RGB[FLASH],
    "frozen": _PALETTE_RGB[FROZEN],
    "miscapture": _PALETTE_RGB[MISS],
}


def _palette() -> list[int]:
    flat = [v for rgb in _PALETTE_RGB for v in rgb]
    return flat + [0] * (768 - len(flat))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def random_policy(seed: int) -> Policy:
    """Uniformly random available actions, drawn from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)

    def policy(out: EnvOutput) -> torch.Tensor:
        u = torch.rand(out.avail.shape, generator=gen)
        return u.masked_fill(~out.avail.cpu(), -1.0).argmax(dim=-1)

    return policy


class _Recorder:
    """Wraps the env's step-noise method to keep the draws of the last step (unchanged)."""

    def __init__(self, env: Any):
        self.noise: Any = None
        self._inner = getattr(env, "_step_noise", None)
        if self._inner is not None:
            env._step_noise = self

    def __call__(self) -> Any:
        self.noise = self._inner()
        return self.noise


class _Snapshot:
    """Plain-Python copy of the single environment's positions (env 0)."""

    def __init__(self, env: Any):
        w = env.width
        self.pred = [divmod(int(c), w) for c in env.predator_cell[0].tolist()]
        self.prey = [divmod(int(c), w) for c in env.prey_cell[0].tolist()]
        self.frozen = [bool(x) for x in env.frozen[0].tolist()]
        self.alive = [bool(x) for x in env.prey_alive[0].tolist()]


def _events(
    before: _Snapshot, after: _Snapshot, actions: list[int], prey_order: list[int] | None
) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Captured prey, newly frozen predators and ``(catcher, prey)`` miscaptures of a step.

    Predators do not move after the move phase and a prey only moves in its own turn, so
    a prey is resolved at its pre-step cell against the predators' post-move cells; a
    catcher frozen by an earlier prey of the same step no longer counts.
    """
    n = len(before.pred)
    captured = [j for j, a in enumerate(before.alive) if a and not after.alive[j]]
    newly_frozen = [i for i in range(n) if after.frozen[i] and not before.frozen[i]]
    # Post-move cells: catchers do not move, so frozen-by-this-step ones stand where they
    # stood before the step.
    pos = [before.pred[i] if i in newly_frozen else after.pred[i] for i in range(n)]
    frozen = list(before.frozen)
    order = prey_order if prey_order is not None else list(range(len(before.prey)))
    misses: list[tuple[int, int]] = []
    for j in order:
        if not before.alive[j]:
            continue
        r, c = before.prey[j]
        catchers = [
            i
            for i in range(n)
            if not frozen[i]
            and actions[i] == CATCH
            and abs(pos[i][0] - r) + abs(pos[i][1] - c) == 1
        ]
        if j in captured:
            for i in catchers:
                frozen[i] = True
        elif len(catchers) == 1:
            misses.append((catchers[0], j))
    return captured, newly_frozen, misses


class _Painter:
    def __init__(self, env: Any, cell_px: int, show_view: bool):
        self.h, self.w, self.px = env.height, env.width, cell_px
        self.half = int(getattr(env, "view", 1)) // 2
        self.show_view = show_view
        self.font = _font(max(10, cell_px // 2))
        self.header_font = _font(14)
        self.header_px = 24
        self.size = (self.w * cell_px + 1, self.header_px + self.h * cell_px + 1)
        self.palette = _palette()

    def _box(self, r: int, c: int, inset: int = 0) -> tuple[int, int, int, int]:
        x0, y0 = c * self.px, self.header_px + r * self.px
        return (x0 + inset, y0 + inset, x0 + self.px - inset, y0 + self.px - inset)

    def _centre_text(self, draw: ImageDraw.ImageDraw, r: int, c: int, text: str) -> None:
        x0, y0, x1, y1 = self._box(r, c)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=self.font)
        x = (x0 + x1 - (right - left)) / 2 - left
        y = (y0 + y1 - (bottom - top)) / 2 - top
        draw.text((x, y), text, fill=LABEL, font=self.font)

    def frame(
        self,
        snap: _Snapshot,
        header: str,
        captured_at: list[tuple[int, int]],
        frozen_now: list[tuple[int, tuple[int, int]]],
        misses: list[tuple[tuple[int, int], tuple[int, int]]],
    ) -> Image.Image:
        img = Image.new("P", self.size, BACKGROUND)
        img.putpalette(self.palette)
        draw = ImageDraw.Draw(img)
        px, hp = self.px, self.header_px
        draw.rectangle((0, 0, self.size[0], hp - 1), fill=HEADER)
        draw.text((4, 4), header, fill=TEXT, font=self.header_font)
        live = [p for p, f in zip(snap.pred, snap.frozen, strict=True) if not f]
        if self.show_view:
            for r, c in live:
                r0, c0 = max(r - self.half, 0), max(c - self.half, 0)
                r1, c1 = min(r + self.half, self.h - 1), min(c + self.half, self.w - 1)
                draw.rectangle(
                    (c0 * px, hp + r0 * px, (c1 + 1) * px, hp + (r1 + 1) * px), fill=VIEW
                )
        for r, c in captured_at:
            draw.rectangle(self._box(r, c), fill=FLASH_BG)
        for k in range(self.w + 1):
            draw.line((k * px, hp, k * px, hp + self.h * px), fill=GRID)
        for k in range(self.h + 1):
            draw.line((0, hp + k * px, self.w * px, hp + k * px), fill=GRID)
        m = max(2, px // 8)
        for (r, c), alive in zip(snap.prey, snap.alive, strict=True):
            if alive:
                x0, y0, x1, y1 = self._box(r, c, m)
                xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
                draw.polygon(((xm, y0), (x1, ym), (xm, y1), (x0, ym)), fill=PREY)
        for r, c in captured_at:  # the captured prey, ringed, in its last frame
            x0, y0, x1, y1 = self._box(r, c, m)
            xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
            draw.polygon(((xm, y0), (x1, ym), (xm, y1), (x0, ym)), fill=PREY)
            draw.ellipse(self._box(r, c, 1), outline=FLASH, width=max(2, px // 10))
        for i, ((r, c), frozen) in enumerate(zip(snap.pred, snap.frozen, strict=True)):
            if not frozen:
                draw.ellipse(self._box(r, c, m), fill=PREDATOR)
                self._centre_text(draw, r, c, str(i))
        for i, (r, c) in frozen_now:  # catchers frozen by this step: grey, then gone
            draw.ellipse(self._box(r, c, m), fill=FROZEN, outline=FLASH, width=max(2, px // 12))
            self._centre_text(draw, r, c, str(i))
        for (pr, pc), (qr, qc) in misses:
            draw.ellipse(self._box(pr, pc, 1), outline=MISS, width=max(2, px // 12))
            x0, y0, x1, y1 = self._box(qr, qc, px // 4)
            lw = max(2, px // 14)
            draw.line((x0, y0, x1, y1), fill=MISS, width=lw)
            draw.line((x0, y1, x1, y0), fill=MISS, width=lw)
        return img


def render_predator_prey(
    path: str | Path,
    policy: Policy | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    fps: float = 4,
    cell_px: int = 40,
    show_view: bool = True,
    **env_params: Any,
) -> dict[str, Any]:
    """Run one Predator-Prey episode and write it to ``path`` as an animated GIF.

    Args:
        path: output file (parent folders are created).
        policy: ``(out: EnvOutput) -> actions`` int64 ``[1, n_agents]``; ``None`` picks
            uniformly random available actions from a generator seeded with ``seed``.
        seed: environment seed (and the random policy's).
        max_steps: stop after this many steps even if the episode is still running.
        fps: frames per second of the animation (the last frame is held 3x longer).
        cell_px: pixels per grid cell.
        show_view: shade the cells inside the live predators' view windows.
        **env_params: Predator-Prey parameters (``n_agents``, ``punishment``, ...).

    Returns:
        ``{"steps", "return", "captures", "miscaptures", "terminated", "truncated",
        "frames", "size", "path"}``; ``frames == steps + 1``.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if cell_px < 8:
        raise ValueError(f"cell_px must be >= 8, got {cell_px}")
    env: Any = make("predator_prey", num_envs=1, seed=seed, **env_params)
    act = policy if policy is not None else random_policy(seed)
    recorder = _Recorder(env)
    painter = _Painter(env, cell_px, show_view)
    limit = env.spec.episode_limit
    out = env.reset()
    snap = _Snapshot(env)
    total, n_captures, n_misses, t = 0.0, 0, 0, 0
    frames = [painter.frame(snap, f"t=0/{limit}  return=0  captures=0", [], [], [])]
    while not bool(out.done[0]) and (max_steps is None or t < max_steps):
        actions = act(out)
        out = env.step(actions)
        t += 1
        after = _Snapshot(env)
        order = recorder.noise.prey_order[0].tolist() if recorder.noise is not None else None
        captured, newly_frozen, misses = _events(snap, after, actions[0].tolist(), order)
        reward = float(out.reward[0])
        total += reward
        n_captures += len(captured)
        n_misses += len(misses)
        events = f"  +{len(captured) * env.capture_reward:g} capture" if captured else ""
        if misses:
            events += f"  -{len(misses) * env.punishment:g} miss"
        header = f"t={t}/{limit}  return={total:g}  captures={n_captures}{events}"
        frames.append(
            painter.frame(
                after,
                header,
                [snap.prey[j] for j in captured],
                [(i, snap.pred[i]) for i in newly_frozen],
                [(after.pred[i], snap.prey[j]) for i, j in misses],
            )
        )
        snap = after
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ms = max(1, round(1000 / fps))
    # Every frame's header differs (it shows t), so Pillow never merges frames.
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        duration=[ms] * (len(frames) - 1) + [3 * ms],
        loop=0,
        optimize=False,
        disposal=1,
    )
    return {
        "steps": t,
        "return": total,
        "captures": n_captures,
        "miscaptures": n_misses,
        "terminated": bool(out.terminated[0]),
        "truncated": bool(out.truncated[0]),
        "frames": len(frames),
        "size": painter.size,
        "path": str(path),
    }
