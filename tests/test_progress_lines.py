"""Long work talks in logs: where stderr is not a terminal, progress is plain lines, one per
interval at most (done/total, rate, time left), and a last line for a phase that wrote any."""

from __future__ import annotations

import io

from curate.cli._render import LineProgress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_most_once_per_interval_with_rate_and_time_left():
    out, clock = io.StringIO(), Clock()
    with LineProgress(out, interval=30, clock=clock) as progress:
        progress.start(1000, "rows", "embed emb_minilm")
        for _ in range(100):  # 10 rows every 5 s: 2 rows/s, 500 s for the 1,000
            clock.now += 5
            progress.advance(10)
    lines = out.getvalue().splitlines()
    # 500 s of work: a line at 30, 60, ... 480 s (16 lines), then the closing line.
    assert len(lines) == 17
    assert lines[0] == "embed emb_minilm: 60/1,000 rows (6.0%), 2.0 rows/s, 7m 50s left"
    assert lines[-2] == "embed emb_minilm: 960/1,000 rows (96.0%), 2.0 rows/s, 20s left"
    assert lines[-1] == "embed emb_minilm: 1,000 rows done in 8m 20s (2.0 rows/s)"


def test_unknown_total_reports_elapsed_and_a_short_phase_says_nothing():
    out, clock = io.StringIO(), Clock()
    with LineProgress(out, interval=30, clock=clock) as progress:
        progress.start(5, "picks", "select kcenter")  # 5 s in all: no line
        for _ in range(5):
            clock.now += 1
            progress.advance()
        progress.start(None, "records", "ingest")
        clock.now += 45
        progress.advance(900)
        clock.now += 20  # under the interval since the last line: nothing more
        progress.advance(400)
    assert out.getvalue().splitlines() == [
        "ingest: 900 records, 20.0 records/s, 45s elapsed",
        "ingest: 1,300 records done in 1m 05s (20.0 records/s)",
    ]


def test_a_failed_phase_leaves_the_error_line_last():
    out, clock = io.StringIO(), Clock()
    try:
        with LineProgress(out, interval=1, clock=clock) as progress:
            progress.start(10, "steps", "train")
            clock.now += 2
            progress.advance(3)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert out.getvalue().splitlines() == ["train: 3/10 steps (30.0%), 1.5 steps/s, 5s left"]


def test_cli_writes_lines_when_stderr_is_not_a_terminal(
    cli, tmp_path, monkeypatch, write_embeddings
):
    """The renderer is chosen at the CLI edge: under pytest stderr is captured (not a
    terminal), so `ingest` and `select` write lines; with the default interval a run of a
    second writes none, and stdout holds only the result."""
    from curate.store import Store

    monkeypatch.chdir(tmp_path)  # the subset goes to ./data/subsets
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(f'{{"instruction": "question {i}", "output": "answer {i}"}}\n' for i in range(60))
    )
    db = tmp_path / "db"
    quiet = cli("ingest", pool, "--db", db, "--json")
    assert quiet.code == 0 and quiet.err == ""
    write_embeddings(Store(db), "vec")

    monkeypatch.setenv("CURATE_PROGRESS_INTERVAL", "0")
    done = cli("select", "--db", db, "--embeddings", "vec", "--budget", "5", "--json")
    assert done.code == 0, done.err
    assert done.json()["strategy"]
    lines = done.err.splitlines()
    assert lines[0].startswith("select kcenter: 1/5 picks (20.0%), ")
    assert lines[-1].startswith("select kcenter: 5 picks done in ")


def test_hygiene_commands_write_lines_when_stderr_is_not_a_terminal(cli, tmp_path, monkeypatch):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(f'{{"instruction": "question {i}", "output": "answer {i}"}}\n' for i in range(30))
    )
    db = tmp_path / "db"
    assert cli("ingest", pool, "--db", db).code == 0
    monkeypatch.setenv("CURATE_PROGRESS_INTERVAL", "0")
    for args in (["dedup"], ["decontaminate", "--against", pool]):
        done = cli(*args, "--db", db, "--json")
        assert done.code == 0, done.err
        assert done.err.strip(), f"curate {args[0]} wrote no progress line"
        assert "\x1b[" not in done.err  # plain lines, not a rich bar
