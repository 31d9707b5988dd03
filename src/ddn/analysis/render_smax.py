"""A SMAX battle as an animated GIF: units, teams, health, and the outcome.

Reads the unit positions, health, types and teams from the JaxMARL state that
``ddn.envs.smax.env.SMAX`` carries (battle 0), one frame per step. Needs the ``smax`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ddn.analysis.render import Policy, _font, random_policy
from ddn.envs.registry import make

_ALLY, _ENEMY = (40, 90, 200), (210, 50, 40)
_DEAD = (190, 190, 190)


def _units(env: Any) -> dict[str, np.ndarray]:
    """Battle 0's units as numpy arrays (positions, alive, health fraction, team, type)."""
    state = env.jax_state.state  # the heuristic-enemy wrapper's state -> SMAX's State
    jenv = env.jaxmarl_env
    types = np.asarray(state.unit_types[0])
    max_health = np.asarray(jenv.unit_type_health)[types]
    return {
        "pos": np.asarray(state.unit_positions[0], dtype=np.float64),
        "alive": np.asarray(state.unit_alive[0], dtype=bool),
        "health": np.asarray(state.unit_health[0], dtype=np.float64) / max_health,
        "team": np.asarray(state.unit_teams[0]),
        "type": types,
    }


def _frame(
    env: Any, units: dict, view: tuple[float, float, float], text: str, size: int
) -> Image.Image:
    """Draw one snapshot; ``view`` = (x0, y0, side) of the square of the map shown."""
    jenv = env.jaxmarl_env
    header = 22
    img = Image.new("RGB", (size, size + header), "white")
    draw = ImageDraw.Draw(img)
    draw.text((6, 4), text, fill="black", font=_font(12))
    x0, y0, side = view
    scale = size / side
    shorthand = list(jenv.unit_type_shorthands)
    radii = np.asarray(jenv.unit_type_radiuses)
    for i in np.argsort(units["alive"]):  # the dead first, underneath
        x = (units["pos"][i][0] - x0) * scale
        y = header + size - (units["pos"][i][1] - y0) * scale  # the map's y axis points up
        r = max(6.0, float(radii[units["type"][i]]) * scale)
        alive = bool(units["alive"][i])
        colour = (_ALLY if units["team"][i] == 0 else _ENEMY) if alive else _DEAD
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="black")
        draw.text((x - 3, y - 7), shorthand[units["type"][i]], fill="white", font=_font(12))
        if alive:  # health bar above the unit
            frac = float(np.clip(units["health"][i], 0.0, 1.0))
            draw.rectangle((x - r, y - r - 6, x + r, y - r - 2), fill=(220, 220, 220))
            draw.rectangle((x - r, y - r - 6, x - r + 2 * r * frac, y - r - 2), fill=(60, 170, 60))
    return img


def render_smax(
    path: str | Path,
    policy: Policy | None = None,
    seed: int = 0,
    map_name: str = "3m",
    fps: int = 8,
    size: int = 480,
    **env_params: Any,
) -> dict[str, Any]:
    """Play one SMAX battle (``policy``, default uniformly random available actions) and
    write it to ``path`` as a GIF; returns steps, return, won and the path."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    env = make("smax", num_envs=1, seed=seed, map_name=map_name, **env_params)
    policy = policy or random_policy(seed)
    out = env.reset()
    ret = 0.0
    shots = [(_units(env), f"{map_name}  t=0  return=0.0")]
    while not bool(out.done.all()):
        out = env.step(policy(out).to(env.device))
        ret += float(out.reward[0])
        note = ("won" if bool(out.won[0]) else "lost") if bool(out.terminated[0]) else ""
        note = "time-out" if bool(out.truncated[0]) else note
        shots.append((_units(env), f"{map_name}  t={len(shots)}  return={ret:.1f}  {note}"))
    # Zoom on where the battle happened: the square around every position it visited.
    pos = np.concatenate([u["pos"] for u, _ in shots])
    lo, hi = pos.min(axis=0) - 2.0, pos.max(axis=0) + 2.0
    side = float(max(hi - lo))
    centre = (lo + hi) / 2
    view = (float(centre[0] - side / 2), float(centre[1] - side / 2), side)
    frames = [_frame(env, units, view, text, size) for units, text in shots]
    t = len(shots) - 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return {"steps": t, "return": ret, "won": bool(out.won[0]), "frames": len(frames),
            "path": str(path)}  # fmt: skip
