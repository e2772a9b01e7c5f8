"""benchmarks/report.py on a small N: the generated database has the daemon's schema and a
realistic mix, the report over it runs for every grouping, and the table is printed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks.report import GROUPINGS, generate, live_cost, parse_args, render, time_reports


def test_a_small_year_is_generated_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "bench.db"
    counts, gen_s = generate(db, 500, seed=3)
    assert counts["calls"] == 500
    assert counts["call_records"] == 500
    assert 500 < counts["queue_entries"] < 600  # about 5 % transferred on: two entries
    assert counts["seat_events"] > 4 * 400  # four per answered call
    build, reports = asyncio.run(
        time_reports(db, ["line x day", "seat"], [name for name, _ in GROUPINGS])
    )
    assert build.days == 365
    assert build.rows == 365 * 5  # five grains a day
    assert [r.name for r in reports] == [name for name, _ in GROUPINGS]
    # the old report (before issue 17's rewrite) timed beside the new, same groups
    assert {r.name for r in reports if r.before_s is not None} == {"line x day", "seat"}
    # the roll-up's report equals the raw one for every grouping
    assert all(r.equal for r in reports)
    assert "MISMATCH" not in capsys.readouterr().out
    by = {r.name: r.groups for r in reports}
    assert by["line"] >= 5
    assert by["day"] > 200  # 500 calls over 365 days
    lines = render(counts, db.stat().st_size, gen_s, build, reports)
    assert lines[0].startswith("calls 500")
    assert len(lines) == 3 + len(GROUPINGS)


def test_live_cost_is_measured_both_ways() -> None:
    c = live_cost(300, seed=2)
    assert c.entries >= 300
    assert c.before_ms > 0
    assert c.after_ms > 0


def test_sizes_and_old_groupings_are_parsed() -> None:
    args = parse_args(["--calls", "100,2000", "--old", "line, day", "--raw", "seat"])
    assert args.calls == [100, 2000]
    assert args.old == ["line", "day"]
    assert args.raw == ["seat"]
    assert parse_args(["--old", "all"]).old == [name for name, _ in GROUPINGS]


@pytest.mark.parametrize(
    "argv",
    [["--calls", "0"], ["--calls", "5000001"], ["--live", "-1"], ["--old", "week"]],
)
def test_runs_are_bounded(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
