"""``ddn render`` for SMAX battles: a GIF of the units, one frame per step."""

from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("jaxmarl")

from ddn.analysis.render_smax import render_smax
from ddn.cli import main

# Both tests compile a SMAX battle with JAX: the slow tier only.
pytestmark = pytest.mark.slow


def test_render_smax_writes_one_frame_per_step(tmp_path):
    info = render_smax(tmp_path / "b.gif", seed=1, map_name="3m", size=200)
    with Image.open(info["path"]) as gif:
        assert gif.is_animated
        assert gif.n_frames == info["steps"] + 1 == info["frames"]
        assert gif.size == (200, 222)  # the map square plus the header line
        gif.seek(0)
        colours = {c for _, c in gif.convert("RGB").getcolors(1 << 16)}
    # Both teams are on the board at the start.
    assert (40, 90, 200) in colours and (210, 50, 40) in colours


def test_cli_renders_a_smax_battle_and_refuses_maps_for_predator_prey(tmp_path, capsys):
    out = tmp_path / "c.gif"
    assert main(["render", "--env", "smax", "--map", "3m", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["render", "--map", "3m", "--out", str(tmp_path / "d.gif")]) == 2
    assert "no maps" in capsys.readouterr().err
