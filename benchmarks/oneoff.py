"""The one-off job, timed as a user runs it: `curate ingest` + `curate select --budget 1000`
on a chat-shaped pool, each a whole process (wall time, peak RSS), for the code before the
change (a `git archive` of ``--baseline``, run with its own PYTHONPATH) and this checkout,
in the same run, on the same pool and machine.

    nice -n 10 python benchmarks/oneoff.py              # 16,000 rows: the baseline alone > 1 h
    nice -n 10 python benchmarks/oneoff.py --rows 400 --embedder static:minilm
    python benchmarks/oneoff.py --baseline none --embedder static:minilm   # this checkout only
    python benchmarks/oneoff.py --baseline-from old.json   # reuse a baseline measured earlier
    nice -n 10 python benchmarks/oneoff.py --baseline 32b85fa --baseline-limit 600  # stop it at 10 min

The pool comes from ``benchmarks/chat_pool.py`` (ShareGPT conversations composed from
``../shared/data``; never committed). Each command's stderr goes to a log beside its
database; the table says how many progress lines it wrote (stderr is not a terminal here,
as in CI, ``nohup`` or a DVC stage).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import chat_pool  # noqa: E402  (a sibling script)

BASELINE = "a40c042"
PROGRESS_LINE = re.compile(r"^[\w -]+: [\d,]+(/[\d,]+)? \w+( \(|, | done in )")


def run(
    code: Path, args: list[str], log: Path, env: dict[str, str], limit: float | None = None
) -> dict:
    """One `curate ARGS` process with ``code`` first on PYTHONPATH: wall s, peak RSS MB;
    killed after ``limit`` seconds (``stopped``: its last progress line says how far it got)."""
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "curate", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**env, "PYTHONPATH": str(code)},
            cwd=log.parent,  # `-m` puts the cwd first on sys.path: never this checkout's curate/
        )
        timer = threading.Timer(limit, proc.kill) if limit else None
        if timer:
            timer.start()
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        if timer:
            timer.cancel()
    seconds = time.perf_counter() - started
    code_ = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    lines = [line for line in text.splitlines() if PROGRESS_LINE.match(line)]
    stopped = limit is not None and code_ == -9 and seconds >= limit
    if code_ != 0 and not stopped:
        raise SystemExit(f"curate {' '.join(args)} failed ({code_}):\n{text[-2000:]}")
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "progress_lines": len(lines),
        "stopped": stopped,
        "last_progress": lines[-1] if lines else "",
        "result": json.loads(out) if out.strip().startswith("{") else None,
    }


def job(
    code: Path,
    pool: Path,
    work: Path,
    budget: int,
    env: dict[str, str],
    embedder: str | None,
    limit: float | None = None,
) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    db = work / "db"
    ingest = run(
        code,
        ["ingest", str(pool), "--db", str(db), "--skip-invalid", "--rejects",
         str(work / "rejects.jsonl"), "--json"],
        work / "ingest.log",
        env,
    )  # fmt: skip
    steps = {"ingest": ingest}
    if embedder:
        steps["embed"] = run(
            code,
            ["embed", "--embedder", embedder, "--db", str(db), "--json"],
            work / "embed.log",
            env,
        )
    steps["select"] = run(
        code,
        ["select", "--budget", str(budget), "--db", str(db), "--out", str(work / "subset"),
         "--json"],
        work / "select.log",
        env,
        limit,
    )  # fmt: skip
    return steps


def checkout(rev: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16000, help="conversations in the pool")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--pool", type=Path, help="use this pool instead of building one")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    parser.add_argument("--baseline-from", type=Path, help="a --json file of an earlier run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--embedder", help="this checkout runs `curate embed --embedder SPEC` before select"
    )
    parser.add_argument(
        "--baseline-limit", type=float, help="stop the baseline's select after this many seconds"
    )
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="bench-oneoff-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env["CURATE_CACHE"] = str(work / "cache")  # a first run's one-time exports are timed
        pool = args.pool
        if pool is None:
            pool = work / "pool.json"
            print(f"pool: {chat_pool.write(pool, args.rows)}", flush=True)
        results: dict[str, dict] = {}
        if args.baseline_from:
            results["baseline"] = json.loads(args.baseline_from.read_text())["baseline"]
        elif args.baseline == "none":
            results["baseline"] = {}
        else:
            base = checkout(args.baseline, work / "baseline-code")
            print(f"baseline {args.baseline}: running", flush=True)
            results["baseline"] = job(
                base, pool, work / "baseline", args.budget, env, None, args.baseline_limit
            )
        print("this checkout: running", flush=True)
        results["current"] = job(ROOT, pool, work / "current", args.budget, env, args.embedder)

    header = f"{'command':<10}{'code':<10}{'wall s':>9}{'× faster':>10}{'peak RSS MB':>13}"
    header += f"{'progress lines':>16}"
    print()
    print(header)
    print("-" * len(header))
    for command in ("ingest", "embed", "select"):
        for label in ("baseline", "current"):
            r = results[label].get(command)
            if r is None:
                continue
            base = results["baseline"].get(command) if label == "current" else r
            ratio = f"{base['seconds'] / r['seconds']:>9.2f}×" if base else f"{'':>10}"
            print(
                f"{command:<10}{label:<10}{r['seconds']:>9.1f}{ratio}"
                f"{r['peak_rss_mb']:>13,.0f}{r['progress_lines']:>16}"
                + (f"  stopped at: {r['last_progress']}" if r.get("stopped") else "")
            )
    for label in [k for k, v in results.items() if v]:
        total = sum(r["seconds"] for r in results[label].values())
        peak = max(r["peak_rss_mb"] for r in results[label].values())
        added = (results[label]["ingest"]["result"] or {}).get("added")
        print(f"{label}: {' + '.join(results[label])} {total / 60:.1f} min, peak RSS "
              f"{peak:,.0f} MB, {added} rows added")  # fmt: skip
    if any(r.get("stopped") for r in results["baseline"].values()):
        print("baseline: stopped at --baseline-limit, so its times and ratios are lower bounds")
    last = results["current"]["select"]["last_progress"]
    if last:
        print(f"last progress line of select: {last}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
