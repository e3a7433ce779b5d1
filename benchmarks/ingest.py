"""Streaming ingest: peak memory and throughput on a large synthetic JSONL.

Each measurement runs in a fresh subprocess so its peak RSS is its own. Baseline, in the
same run: loading the whole file with json (what a non-streaming reader does) and the
bare interpreter with curate imported.

    python benchmarks/ingest.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import resource, sys, time, json
mode, path, db = sys.argv[1:4]
t = time.perf_counter()
if mode == "curate":
    from curate.ingest import ingest
    from curate.store import Store
    report = ingest(Store(db), [path])
    rows = report.added
elif mode == "json-load-all":
    import curate.ingest  # same imports as the curate run
    with open(path) as fh:
        data = [json.loads(line) for line in fh]
    rows = len(data)
else:
    import curate.ingest
    rows = 0
seconds = time.perf_counter() - t
print(json.dumps({"rows": rows, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_jsonl(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = "data model train select pool round diverse center embed token answer question".split()
    with path.open("w") as fh:
        for i in range(rows):
            instruction = " ".join(rng.choice(words) for _ in range(12)) + f" #{i}"
            output = " ".join(rng.choice(words) for _ in range(rng.randint(10, 40)))
            fh.write(json.dumps({"instruction": instruction, "input": "", "output": output}) + "\n")


def measure(mode: str, path: Path, db: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(db)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pool.jsonl"
        t = time.perf_counter()
        make_jsonl(src, args.rows)
        size_mb = src.stat().st_size / 2**20
        print(
            f"generated {args.rows:,} rows ({size_mb:,.0f} MiB) in {time.perf_counter() - t:.1f}s"
        )
        results = {
            mode: measure(mode, src, Path(tmp) / f"db-{mode}")
            for mode in ("imports-only", "json-load-all", "curate")
        }
    base = results["imports-only"]["peak_rss_mb"]
    print(
        f"{'run':<16}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak RSS MiB':>14}{'above imports':>15}"
    )
    for mode, r in results.items():
        rate = r["rows"] / r["seconds"] if r["rows"] else 0
        print(
            f"{mode:<16}{r['rows']:>12,}{r['seconds']:>10.1f}{rate:>12,.0f}{r['peak_rss_mb']:>14,.0f}{r['peak_rss_mb'] - base:>15,.0f}"
        )
    curate_extra = results["curate"]["peak_rss_mb"] - base
    load_extra = results["json-load-all"]["peak_rss_mb"] - base
    print(
        f"file {size_mb:,.0f} MiB; curate ingest holds {curate_extra / size_mb:.2f}x the file size "
        f"above imports, load-all holds {load_extra / size_mb:.2f}x"
    )


if __name__ == "__main__":
    main()
