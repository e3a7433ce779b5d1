"""Sharded K-center: `curate select` under torchrun at P = 1, 2, 4 ranks (gloo, CPU)
against the single-process `curate select` on the same LanceDB table, same run.

A synthetic pool of N rows with N Gaussian d-dim vectors (``benchmarks/kcenter.py``'s
builder, one streamed commit each) is built once in --workdir and deleted afterwards. Each
run is a fresh process tree; every rank runs under ``/usr/bin/time``, so "peak RSS" is that
whole rank process's high-water mark. "slice GB" is the rank's share of the float32
vectors (N/P × d × 4); the target is 1.2 × slice + 0.6 GB. "same" says whether
examples.jsonl is byte-identical to the single-process run's and the manifest's picks
(ids, hashes, distances) are equal.

    nice -n 10 .venv/bin/python benchmarks/distributed.py                   # 4M x 384, k=1,000
    nice -n 10 .venv/bin/python benchmarks/distributed.py --rows 200000 --dim 384 --k 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = """#!/bin/sh
exec /usr/bin/time -f %M -o "$CURATE_BENCH_RSS/rss.$RANK" "$CURATE_BENCH_PYTHON" -m curate "$@"
"""


def run(ranks: int, args: list[str], cwd: Path, timeout: float) -> dict:
    """``curate ARGS`` in one process (ranks 0) or under torchrun with ``ranks`` ranks."""
    rss = Path(tempfile.mkdtemp(dir=cwd, prefix="rss-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CURATE_BENCH_RSS": str(rss),
        "CURATE_BENCH_PYTHON": sys.executable,
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(ranks, 1))),
    }
    wrapper = cwd / "rank.sh"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    if ranks == 0:
        cmd = ["/bin/sh", str(wrapper), *args]
        env["RANK"] = "0"
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={ranks}", "--no-python", str(wrapper), *args]  # fmt: skip
    started = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f}s"}
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()] or ["?"]
        return {"error": lines[0][:160]}
    peaks = [int((rss / f"rss.{r}").read_text().split()[-1]) * 1024 for r in range(max(ranks, 1))]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    return {"wall": seconds, "select": summary["seconds"], "peaks": peaks}


def same(a: Path, b: Path) -> bool:
    if (a / "examples.jsonl").read_bytes() != (b / "examples.jsonl").read_bytes():
        return False
    picks = [json.loads((d / "manifest.json").read_text())["picks"] for d in (a, b)]
    return picks[0] == picks[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--no-single", action="store_true", help="skip the one-process run")
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--timeout", type=float, default=3600)
    opts = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="distributed-select-", dir=opts.workdir))
    try:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "kcenter.py"), "--build", str(tmp / "db"),
             str(opts.rows), str(opts.dim)],
            check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        print(f"built {opts.rows:,} x {opts.dim} in {time.perf_counter() - started:.0f}s "
              f"({opts.rows * opts.dim * 4 / 1e9:.2f} GB of float32 vectors); k = {opts.k:,}")  # fmt: skip
        base = ["select", "--db", "db", "--embeddings", "bench", "--budget", str(opts.k),
                "--device", "cpu", "--seed", "0", "--name", "bench", "--json"]  # fmt: skip
        print(f"{'run':<22} {'wall s':>7} {'select s':>8} {'slice GB':>8} {'peak GB/rank':>22} "
              f"{'target GB':>9} {'ok':>3} {'same':>5}")  # fmt: skip
        reference = None
        runs = ([0] if not opts.no_single else []) + [int(p) for p in opts.ranks.split(",")]
        for p in runs:
            out = tmp / f"out-{p}"
            result = run(p, [*base, "--out", str(out)], tmp, opts.timeout)
            label = "one process" if p == 0 else f"torchrun P={p}"
            if "error" in result:
                print(f"{label:<22} {result['error']}")
                continue
            reference = reference or out
            slice_gb = opts.rows * opts.dim * 4 / max(p, 1) / 1e9
            target = 1.2 * slice_gb + 0.6
            peaks = result["peaks"]
            ok = "-" if p == 0 else ("yes" if max(peaks) / 1e9 <= target else "NO")
            print(
                f"{label:<22} {result['wall']:>7.1f} {result['select']:>8.1f} {slice_gb:>8.2f} "
                f"{' '.join(f'{b / 1e9:.2f}' for b in peaks):>22} "
                f"{'-' if p == 0 else f'{target:.2f}':>9} {ok:>3} "
                f"{'ref' if out == reference else ('yes' if same(reference, out) else 'NO'):>5}",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
