"""Reading Asterisk's queue_log as it grows, is rotated, truncated (cti/adapters/queue_log.py)."""

from __future__ import annotations

from pathlib import Path

from cti.adapters.queue_log import QueueLogFile


def test_lines_as_they_come_a_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    f = QueueLogFile(path)
    assert f.read().missing
    path.write_bytes(b"1|a|q|NONE|ENTERQUEUE\n2|a|q|1001|CONN")
    assert f.read().lines == ("1|a|q|NONE|ENTERQUEUE",)
    with path.open("ab") as out:
        out.write(b"ECT|1\n")
    got = f.read()
    assert got.lines == ("2|a|q|1001|CONNECT|1",)
    assert not got.reopened
    assert f.read().lines == ()


def test_a_rotated_or_truncated_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_bytes(b"1|a|q|NONE|ENTERQUEUE\n")
    f = QueueLogFile(path)
    f.read()
    path.rename(tmp_path / "queue_log.1")  # logrotate; Asterisk opens a new file
    path.write_bytes(b"5|b|q|NONE|ENTERQUEUE\n")
    got = f.read()
    assert got.reopened
    assert got.lines == ("5|b|q|NONE|ENTERQUEUE",)
    path.write_bytes(b"6|c\n")  # truncated in place (copytruncate), shorter than the offset
    got = f.read()
    assert got.reopened
    assert got.lines == ("6|c",)


def test_reads_are_bounded_and_bytes_decoded_leniently(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_bytes(b"".join(b"%d|u|q|NONE|E\n" % i for i in range(1000)) + b"9|\xd5\xc5|x\n")
    f = QueueLogFile(path, max_read=1024)
    lines: list[str] = []
    reads = 0
    while True:
        got = f.read()
        reads += 1
        lines += got.lines
        if not got.more:
            break
    assert reads > 10
    assert len(lines) == 1001
    assert lines[-1] == "9|\ufffd\ufffd|x"  # a GBK name costs its characters, not the line


def test_a_partial_line_past_the_bound_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_bytes(b"x" * 300)
    f = QueueLogFile(path, max_line=100)
    assert f.read().lines == ()
    with path.open("ab") as out:
        out.write(b"tail\n1|ok\n")
    assert f.read().lines == ("tail", "1|ok")  # the rest of the giant line, then good ones


def test_start_at_finds_the_first_line_of_a_time_by_bisection(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    t0 = 1_796_000_000
    with path.open("wb") as out:
        for i in range(200_000):  # ~6 MB, one line a second
            out.write(b"%d|u%d|q|NONE|ENTERQUEUE|||\n" % (t0 + i, i))
    f = QueueLogFile(path)
    f.start_at(t0 + 150_000)
    assert 0 < f.offset < path.stat().st_size
    first = f.read().lines[0]
    at = int(first.split("|")[0])
    assert t0 + 150_000 - 4000 < at <= t0 + 150_000  # a few KB before, never after
    # before everything: from the start; a missing file: nothing to do
    g = QueueLogFile(path)
    g.start_at(t0 - 10)
    assert g.offset == 0
    QueueLogFile(tmp_path / "none").start_at(t0)


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    got = QueueLogFile(tmp_path).read()  # a directory: the OS refuses as it would a mode
    assert got.missing
    assert "IsADirectoryError" in got.error
