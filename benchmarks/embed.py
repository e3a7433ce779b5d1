"""Embedding throughput: batched and length-sorted vs one example at a time, and cached re-runs.

For each shared pool (../shared/data/pools), embeds the same rows with MiniLM (``st:minilm``)
and with SmolLM2-135M (``lm:smollm2``, vector + uncertainty scores) twice in the same
process: in length-sorted batches, and at batch size 1 in pool order (the DiverseEvol
reference's way). Then embeds ~2,000 rows of both pools through ``curate.embed.embed`` (LanceDB
writes included) and times the fully cached re-run, in the library and as a CLI process.

    .venv/bin/python benchmarks/embed.py --limit 32 --lm-limit 8   # ≈10 min on 2 busy cores

Targets: MiniLM batched ≥ 3× batch-1; cached re-run of ~2,000 rows < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POOLS = ROOT.parent / "shared" / "data" / "pools"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def spread(rows: list[dict], limit: int) -> list[dict]:
    """``limit`` rows evenly spaced over the pool, so lengths are representative."""
    if limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def timed(embedder, rows: list[dict], batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to embed ``rows``."""
    wall, cpu = time.perf_counter(), time.process_time()
    if batch_size == 1:
        for row in rows:  # pool order, one forward pass each
            embedder.embed_batch([row])
    else:
        for _ in embedder.embed(rows, batch_size):
            pass
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(label: str, embedder, rows: list[dict], batch_size: int) -> float:
    """Batched vs batch-1 on the same rows. Other processes share these CPUs, so the
    ratio of CPU seconds (work done) is printed beside the wall-clock ratio."""
    embedder.embed_batch(rows[:2])  # warm-up: weights loaded, kernels initialised
    batched, batched_cpu = timed(embedder, rows, batch_size)
    single, single_cpu = timed(embedder, rows, 1)
    print(
        f"  {label:<8} {len(rows):>4} rows  batch {batch_size:>2}: "
        f"{len(rows) / batched:6.2f} ex/s  batch 1: {len(rows) / single:6.2f} ex/s  "
        f"ratio {single / batched:4.2f}x wall, "
        f"{single_cpu / batched_cpu:4.2f}x CPU",
        flush=True,
    )
    return single / batched


def pool_rows(store_dir: Path, source: Path) -> list[dict]:
    from curate.ingest import ingest
    from curate.store import Store

    store = Store(store_dir)
    ingest(store, [str(source)])
    return store.read_pool().to_pylist()


def cached_rerun(tmp: Path, rows: int, max_length: int) -> None:
    from curate.embed import embed
    from curate.embedders import load_embedder
    from curate.ingest import ingest
    from curate.store import Store

    records = []
    for name in ("lima.json", "alpaca_en_demo.json"):
        records += json.loads((POOLS / name).read_text(encoding="utf-8"))
    source = tmp / "both.json"
    source.write_text(json.dumps(records[:rows]), encoding="utf-8")
    store = Store(tmp / "cached-db")
    ingest(store, [str(source)])
    first = embed(store, load_embedder("st:minilm", max_length), "minilm")
    print(
        f"  first run:  {first.embedded} rows embedded + written in {first.seconds:.1f}s "
        f"({first.examples_per_s:.1f} ex/s end to end at max length {max_length})"
    )
    embedder = load_embedder("st:minilm", max_length)
    started = time.perf_counter()
    again = embed(store, embedder, "minilm")
    library = time.perf_counter() - started
    assert again.embedded == 0 and not embedder.loaded
    cli = [sys.executable, "-m", "curate", "embed", "--db", str(store.path), "--json"]
    cli += ["--max-length", str(max_length)]
    started = time.perf_counter()
    out = subprocess.run(cli, capture_output=True, text=True, check=True, cwd=ROOT)
    process = time.perf_counter() - started
    assert json.loads(out.stdout)["embedded"] == 0
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import curate.cli"], check=True, cwd=ROOT)
    imports = time.perf_counter() - started
    print(
        f"  cached re-run of {first.pool_rows} rows: library {library:.2f}s, "
        f"`curate embed` process {process:.2f}s"
    )
    print(f"  (of which starting Python + importing curate.cli, incl. lancedb: {imports:.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=32, help="MiniLM rows per pool")
    parser.add_argument(
        "--lm-limit", type=int, default=8, help="SmolLM2 rows per pool (seconds per row on CPU)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="MiniLM batch size")
    parser.add_argument("--lm-batch-size", type=int, default=4, help="SmolLM2 batch size")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument(
        "--cached-rows", type=int, default=2000, help="rows for the cached re-run (0 skips)"
    )
    parser.add_argument(
        "--cached-max-length",
        type=int,
        default=32,
        help="MiniLM max length for the cached re-run's first run (short, so it fills fast)",
    )
    parser.add_argument("--skip-lm", action="store_true", help="MiniLM only")
    args = parser.parse_args()
    started = time.perf_counter()
    if not POOLS.exists():
        sys.exit(f"shared pools not found at {POOLS}")

    import torch

    from curate.embedders import load_embedder

    print(
        f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    minilm = load_embedder("st:minilm", args.max_length, "cpu")
    # fp32: the baseline this benchmark has always measured (the library default is auto)
    smollm2 = None if args.skip_lm else load_embedder("lm:smollm2", args.max_length, "cpu", "fp32")
    ratios: dict[str, list[float]] = {"minilm": [], "smollm2": []}
    with tempfile.TemporaryDirectory(prefix="curate-embed-bench-") as tmp:
        for name in ("lima.json", "alpaca_en_demo.json"):
            rows = pool_rows(Path(tmp) / name, POOLS / name)
            print(f"{name} ({len(rows)} rows)")
            ratios["minilm"].append(
                compare("minilm", minilm, spread(rows, args.limit), args.batch_size)
            )
            if smollm2 is not None:
                ratios["smollm2"].append(
                    compare("smollm2", smollm2, spread(rows, args.lm_limit), args.lm_batch_size)
                )
        if args.cached_rows:
            print("cache (st:minilm)")
            cached_rerun(Path(tmp), args.cached_rows, args.cached_max_length)
    for label, values in ratios.items():
        if values:
            print(f"{label}: batched / batch-1 = {', '.join(f'{v:.2f}x' for v in values)}")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
