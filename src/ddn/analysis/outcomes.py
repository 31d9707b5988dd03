"""How test battles ended: won, lost, or timed out (``ddn report --outcomes``).

A win rate near 0 can mean agents that lose every battle or agents that fight well but
run out of time (on SMAX's 3s_vs_5z, whose battles time out after 101 steps where SMAC's
last 250, slowly winning agents mostly time out: docs/results.md, Table 1). This table
tells the two apart, per run and network, from each test battle's length and win in the
run's ``episodes.jsonl``:

- **won**: the battle was won;
- **lost**: it ended before the episode limit without a win (on SMAC/SMAX: the allies
  were all killed);
- **timed out**: it lasted the run's ``env.episode_limit`` steps without a win.

Runs without per-episode wins (Predator-Prey, runs logged before ``episodes.jsonl``
existed) are listed as left out, with why.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddn.analysis.curves import RunRecord
from ddn.run_folder import EPISODES_FILE


@dataclass(frozen=True)
class Outcomes:
    """The test battles of one network of one run over its last tests."""

    run: str
    network: str  # the episodes' "policy": teacher (every method), student (DDN, rivals)
    won: int
    lost: int
    timed_out: int | None  # None: the run's config names no episode limit
    won_lengths: tuple[int, ...]
    limit: int | None

    @property
    def battles(self) -> int:
        return self.won + self.lost + (self.timed_out or 0)


def _limit(run: RunRecord) -> int | None:
    env = run.config.get("env")
    limit = env.get("episode_limit") if isinstance(env, dict) else None
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def run_outcomes(run: RunRecord, last: int, name: str | None = None) -> list[Outcomes] | str:
    """Each network's outcomes over the run's last ``last`` tests (teacher first), or why
    there are none. ``name``: the run's label in the rows (default: its folder's name)."""
    records = run.episodes()
    if records is None:
        return f"no {EPISODES_FILE} (logged before per-episode values were)"
    tests = [r for r in records if r.get("source") == "test"]
    if not tests:
        return f"no test evaluation in {EPISODES_FILE}"
    if not all("won" in r for r in tests):
        return "its environment logs no wins"
    limit = _limit(run)
    out = []
    networks = {str(r.get("policy")) for r in tests}
    for network in sorted(networks, key=lambda n: (n != "teacher", n)):
        window = sorted(
            (r for r in tests if str(r.get("policy")) == network), key=lambda r: r["t_env"]
        )[-last:]
        lengths = [int(n) for r in window for n in r["length"]]
        wins = [bool(w) for r in window for w in r["won"]]
        won_lengths = tuple(n for n, w in zip(lengths, wins, strict=True) if w)
        not_won = [n for n, w in zip(lengths, wins, strict=True) if not w]
        # Without a limit nothing can be called a time-out: every loss counts as lost.
        timed_out = None if limit is None else sum(n >= limit for n in not_won)
        out.append(
            Outcomes(
                run=name or run.path.name,
                network=network,
                won=len(won_lengths),
                lost=len(not_won) - (timed_out or 0),
                timed_out=timed_out,
                won_lengths=won_lengths,
                limit=limit,
            )
        )
    return out


def _names(runs: Sequence[RunRecord]) -> dict[str, RunRecord]:
    """Each run by its folder's path below the folders' common parent: two sweeps' runs
    share names (``table1/smax-3s_vs_5z-vdn-0``, ``table1_smac_limit/...``)."""
    if not runs:
        return {}
    root = Path(os.path.commonpath([r.path.resolve().parent for r in runs]))
    return {r.path.resolve().relative_to(root).as_posix(): r for r in runs}


def _share(count: int | None, total: int) -> str:
    return "—" if count is None or total == 0 else f"{count / total:.3f}"


def _lengths(lengths: Sequence[int]) -> str:
    if not lengths:
        return "—"
    return f"{statistics.median(lengths):g} ({min(lengths)}-{max(lengths)})"


def outcomes_section(runs: Sequence[RunRecord], last: int = 1) -> str:
    """The Markdown section: one row per run and network, then the runs left out."""
    rows: list[Outcomes] = []
    left_out: list[tuple[str, str]] = []
    for name, run in sorted(_names(runs).items()):
        result = run_outcomes(run, last, name)
        if isinstance(result, str):
            left_out.append((name, result))
        else:
            rows.extend(result)
    tests = "its last test" if last == 1 else f"its last {last} tests"
    lines = [
        "## Battle outcomes",
        "",
        f"Each run's test battles over {tests}, as shares: won; lost (ended before the "
        "episode limit without a win); timed out (lasted the limit without a win). "
        "Won length: the median (range) of the won battles' steps.",
        "",
    ]
    if rows:
        header = ["run", "network", "battles", "won", "lost", "timed out", "won length",
                  "limit"]  # fmt: skip
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for o in rows:
            cells: list[Any] = [
                o.run, o.network, o.battles, _share(o.won, o.battles), _share(o.lost, o.battles),
                _share(o.timed_out, o.battles), _lengths(o.won_lengths),
                "—" if o.limit is None else o.limit,
            ]  # fmt: skip
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    else:
        lines += ["No run logs per-battle wins.", ""]
    if left_out:
        lines.append("Left out:")
        lines += [f"- {name}: {why}" for name, why in left_out]
        lines.append("")
    return "\n".join(lines)
