"""K-center greedy: our exact chunked implementation against two baselines, same run.

  (a) the naive full-matrix algorithm of the DiverseEvol reference (N×N distance matrix,
      then per pick: min over the chosen columns, argmax, drop the row, append a column),
      at N=15k, d=384 and d=4096;
  (b) a plain NumPy running-minimum loop (one X@c per pick, full-length temporaries), at
      N=200k and N=1M, d=384;
for random Gaussian and clustered data, k=1,000 picks from the same seeded first row.

The ``select`` suite measures the whole ``curate select --strategy kcenter`` process reading
its vectors from a LanceDB table (built once per size in --workdir, deleted afterwards):
its peak RSS against the target of 1.3x the float32 vectors + 0.5 GB, and against a bare
``curate pool`` on the same database (imports and pool columns).

Every measurement runs in its own subprocess, so "peak RSS" is that process's high-water
mark (vectors included); "×vec" divides it by the size of the float32 vectors. "GB/s" is
the bytes of vectors read per second by the distance passes (rows read × d × 4): a
look-ahead block serves many picks from one pass and pruning reads fewer rows, so both
beat a one-pass-per-pick memory-bandwidth bound. "same" says
whether the picks equal ours (the float32 baselines may differ on near-ties; ours are
exact against float64).

    .venv/bin/python benchmarks/kcenter.py                      # everything (~10-15 min)
    .venv/bin/python benchmarks/kcenter.py --suite plain --sizes 200000 --data gaussian
    .venv/bin/python benchmarks/kcenter.py --suite full --dims 384 --k 200
    .venv/bin/python benchmarks/kcenter.py --suite select --select-sizes 200000x384,400000x4096
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


# ----------------------------------------------------------------------------- data
def make_data(kind: str, n: int, d: int) -> np.ndarray:
    """float32 (n, d) generated in place, so peak memory stays at the vectors' size."""
    rng = np.random.default_rng(SEED)
    x = np.empty((n, d), dtype=np.float32)
    step = max(1, (1 << 22) // d)
    if kind == "gaussian":
        for s in range(0, n, step):
            x[s : s + step] = rng.standard_normal((min(step, n - s), d), dtype=np.float32)
        return x
    if kind == "clustered":  # 256 well-separated blobs of different spreads
        centers = rng.standard_normal((256, d), dtype=np.float32)
        spread = rng.uniform(0.1, 0.4, size=256).astype(np.float32)
        for s in range(0, n, step):
            m = min(step, n - s)
            label = rng.integers(256, size=m)
            noise = rng.standard_normal((m, d), dtype=np.float32)
            x[s : s + m] = centers[label] + spread[label, None] * noise
        return x
    raise ValueError(kind)


def first_pick(n: int) -> int:
    return int(np.random.default_rng(SEED).integers(n))  # what kcenter_greedy draws


# ----------------------------------------------------------------------------- methods
def naive_full_matrix(x: np.ndarray, k: int) -> list[int]:
    """The reference's algorithm, in NumPy: full distance matrix, re-sliced per pick."""
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    full = x @ x.T
    full *= -2
    full += sq[:, None]
    full += sq[None, :]
    np.maximum(full, 0, out=full)
    np.sqrt(full, out=full)
    labeled = np.zeros(n, dtype=bool)
    labeled[first_pick(n)] = True
    picks = [first_pick(n)]
    mat = full[~labeled][:, labeled]
    for _ in range(k - 1):
        q_tmp = int(mat.min(axis=1).argmax())
        q = int(np.flatnonzero(~labeled)[q_tmp])
        labeled[q] = True
        picks.append(q)
        keep = np.ones(len(mat), dtype=bool)
        keep[q_tmp] = False
        mat = np.concatenate([mat[keep], full[~labeled, q][:, None]], axis=1)
    return picks


def plain_numpy_loop(x: np.ndarray, k: int) -> list[int]:
    """The running-minimum loop from design.md: O(N·d) per pick, full-length temporaries."""
    sq = np.einsum("ij,ij->i", x, x)
    m = np.full(len(x), np.inf, dtype=np.float32)
    i, picks = first_pick(len(x)), []
    for _ in range(k):
        picks.append(i)
        m = np.minimum(m, sq + sq[i] - 2 * (x @ x[i]))
        m[picks] = -np.inf
        i = int(np.argmax(m))
    return picks


def exact_float64_loop(x: np.ndarray, k: int) -> list[int]:
    """The running-minimum loop in float64 on direct differences (no expansion): slow,
    but its picks are what "exact" means, so it checks ours at scale (--exact-check)."""
    m = np.full(len(x), np.inf)
    step = max(1, (1 << 20) // x.shape[1])
    picks = [first_pick(len(x))]
    for _ in range(k - 1):
        c = x[picks[-1]].astype(np.float64)
        for s in range(0, len(x), step):
            diff = x[s : s + step].astype(np.float64) - c
            np.square(diff, out=diff)
            np.minimum(m[s : s + step], diff.sum(axis=1), out=m[s : s + step])
        m[picks[-1]] = -np.inf
        picks.append(int(np.argmax(m)))
    return picks


def ours(x: np.ndarray, k: int, prune: bool, lookahead: bool) -> tuple[list[int], int]:
    from curate.strategies.coverage_numpy import NumpyCoverage
    from curate.strategies.kcenter import greedy

    # what kcenter_greedy runs on a CPU
    with NumpyCoverage(x, prune=prune, lookahead=lookahead) as coverage:
        coverage.add_centers([first_pick(len(x))])
        picks, _ = greedy(coverage, k - 1)
    return [first_pick(len(x)), *picks.tolist()], coverage.rows_scanned


METHODS = ("naive", "plain", "exact64", "ours", "ours-noprune", "ours-nolookahead")


def worker(method: str, kind: str, n: int, d: int, k: int) -> dict:
    x = make_data(kind, n, d)
    cpu_started = time.process_time()
    started = time.perf_counter()
    scanned = n * k
    if method == "naive":
        picks = naive_full_matrix(x, k)
    elif method == "plain":
        picks = plain_numpy_loop(x, k)
    elif method == "exact64":
        picks = exact_float64_loop(x, k)
    else:
        picks, scanned = ours(
            x, k, prune=method != "ours-noprune", lookahead=method != "ours-nolookahead"
        )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "vector_bytes": x.nbytes,
        "scanned_bytes": scanned * d * 4,
        "picks_sha": hashlib.sha256(np.asarray(picks, np.int64).tobytes()).hexdigest()[:16],
    }


def measure(method: str, kind: str, n: int, d: int, k: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, kind, str(n), str(d), str(k)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f}s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": "out of memory" if done.returncode in (-9, 137) else last[:60]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- table
HEADER = (
    f"{'case':<44} {'wall s':>8} {'×base':>7} {'CPU s':>8} {'×base':>7} "
    f"{'peak MiB':>9} {'×vec':>5} {'GB/s':>6} {'same':>5}"
)


def ratio(base: dict | None, r: dict, key: str) -> str:
    if not base or "error" in base:
        return " " * 7
    return f"{base[key] / max(r[key], 1e-9):6.1f}x"


def row(label: str, r: dict, reference: dict | None, baseline: dict | None) -> str:
    if "error" in r:
        return f"{label:<44} {r['error']}"
    same = ""
    if reference is not None and "error" not in reference:
        same = "yes" if r["picks_sha"] == reference["picks_sha"] else "NO"
    return (
        f"{label:<44} {r['seconds']:8.2f} {ratio(baseline, r, 'seconds')} "
        f"{r['cpu_seconds']:8.2f} {ratio(baseline, r, 'cpu_seconds')} "
        f"{r['peak_rss'] / 2**20:9.0f} {r['peak_rss'] / r['vector_bytes']:5.2f} "
        f"{r['scanned_bytes'] / r['seconds'] / 1e9:6.1f} {same:>5}"
    )


def best_of(repeat: int, *case) -> dict:
    """The fastest of ``repeat`` runs (the machine is shared: slower runs are noise)."""
    runs = [measure(*case) for _ in range(repeat)]
    ok = [r for r in runs if "error" not in r]
    return min(ok, key=lambda r: r["seconds"]) if ok else runs[0]


# ----------------------------------------------------------------------------- select
def build_db(db: Path, n: int, d: int) -> None:
    """A pool of ``n`` short rows and ``n`` Gaussian vectors under the name ``bench``,
    each written in one streamed commit (so the builder never holds all the vectors)."""
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa

    from curate.store import POOL_SCHEMA, Store, embedding_schema

    store = Store(db)
    step = max(1, (64 << 20) // (4 * d))

    def pool_batches():
        for s in range(0, n, step):
            i = np.arange(s, min(s + step, n))
            text = [f"question {j}" for j in i]
            columns = {
                "pos": i,
                "id": [f"{j:016x}" for j in i],
                "instruction": text,
                "input": [""] * len(i),
                "output": [f"answer {j}" for j in i],
                "messages": None,
                "category": None,
                "source": ["bench"] * len(i),
                "hash": [f"{j:064x}" for j in i],
                "n_chars": [len(t) + 10 for t in text],
            }
            arrays = [
                pa.nulls(len(i), f.type)
                if columns[f.name] is None
                else pa.array(columns[f.name], f.type)
                for f in POOL_SCHEMA
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=POOL_SCHEMA)

    store.append_pool(pa.RecordBatchReader.from_batches(POOL_SCHEMA, pool_batches()))
    schema = embedding_schema(d)
    rng = np.random.default_rng(SEED)

    def vector_batches():
        for s in range(0, n, step):
            i = np.arange(s, min(s + step, n))
            x = rng.standard_normal((len(i), d), dtype=np.float32)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([f"{j:016x}" for j in i]),
                    pa.array([f"{j:064x}" for j in i]),
                    pa.array(["bench"] * len(i)),
                    pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), d),
                ],
                schema=schema,
            )

    store.create_embeddings(
        "bench", schema, pa.RecordBatchReader.from_batches(schema, vector_batches())
    )


def peak_of(args: list[str], cwd: Path, timeout: float) -> dict:
    """Run ``curate ARGS`` under ``/usr/bin/time``: its own peak RSS and wall time. (A
    child's rusage from this process would start from this process's RSS at the fork.)"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    report = cwd / "time.txt"
    cmd = ["/usr/bin/time", "-f", "%M", "-o", str(report), sys.executable, "-m", "curate", *args]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f}s"}
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": "out of memory" if done.returncode in (-9, 137) else last[:80]}
    kib = int(report.read_text().split()[-1])
    return {"seconds": seconds, "peak_rss": kib * 1024}


def select_suite(sizes: str, k: int, workdir: str, timeout: float) -> None:
    print(
        f"{'curate select --strategy kcenter from LanceDB':<44} {'vectors GB':>10} "
        f"{'peak GB':>8} {'×vec':>5} {'target GB':>9} {'ok':>3} {'pool GB':>8} {'wall s':>7}"
    )
    for size in sizes.split(","):
        n, d = (int(v) for v in size.lower().split("x"))
        picks = min(k, n) if d <= 1024 else min(k, 100)
        tmp = Path(tempfile.mkdtemp(prefix="kcenter-select-", dir=workdir))
        try:
            subprocess.run(  # in a child, so this process stays small
                [sys.executable, __file__, "--build", str(tmp / "db"), str(n), str(d)],
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            vectors = n * d * 4
            bare = peak_of(["pool", "--db", "db"], tmp, timeout)
            run = peak_of(
                [
                    "select",
                    "--db",
                    "db",
                    "--embeddings",
                    "bench",
                    "--strategy",
                    "kcenter",
                    "--budget",
                    str(picks),
                    "--device",
                    "cpu",
                    "--out",
                    "subset",
                ],
                tmp,
                timeout,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        label = f"N={n:,} d={d} k={picks}"
        if "error" in run:
            print(f"{label:<44} {run['error']}")
            continue
        target = 1.3 * vectors + 0.5e9
        print(
            f"{label:<44} {vectors / 1e9:10.2f} {run['peak_rss'] / 1e9:8.2f} "
            f"{run['peak_rss'] / vectors:5.2f} {target / 1e9:9.2f} "
            f"{'yes' if run['peak_rss'] <= target else 'NO':>3} "
            f"{bare.get('peak_rss', float('nan')) / 1e9:8.2f} {run['seconds']:7.1f}"
        )
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--suite", choices=("all", "full", "plain", "select"), default="all")
    parser.add_argument("--data", default="gaussian,clustered")
    parser.add_argument("--dims", default="384,4096", help="dims for the full-matrix suite")
    parser.add_argument("--sizes", default="200000,1000000", help="N for the plain-loop suite")
    parser.add_argument("--n-full", type=int, default=15000, help="N for the full-matrix suite")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="best of R runs per method")
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also time ours without look-ahead blocks and without pruning",
    )
    parser.add_argument(
        "--exact-check", action="store_true", help="also run a float64 loop: picks must equal ours"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--select-sizes",
        default="200000x384,400000x4096",
        help="NxD tables for the select suite (k is capped at 100 above d=1024)",
    )
    parser.add_argument(
        "--workdir", default=tempfile.gettempdir(), help="where the select suite builds tables"
    )
    args = parser.parse_args()
    if args.build:
        build_db(Path(args.build[0]), int(args.build[1]), int(args.build[2]))
        return
    if args.worker:
        method, kind, n, d, k = args.worker
        print(json.dumps(worker(method, kind, int(n), int(d), int(k))))
        return

    kinds = args.data.split(",")
    cases = []
    if args.suite in ("all", "full"):
        cases += [
            ("naive", kind, args.n_full, int(d)) for d in args.dims.split(",") for kind in kinds
        ]
    if args.suite in ("all", "plain"):
        cases += [("plain", kind, int(n), 384) for n in args.sizes.split(",") for kind in kinds]
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"K-center, k={args.k}, {os.cpu_count()} CPUs, load average {load}; best of {args.repeat}"
    )
    if cases:
        print(HEADER)
    for baseline_method, kind, n, d in cases:
        title = f"{kind} N={n:,} d={d}"
        base = best_of(args.repeat, baseline_method, kind, n, d, args.k, args.timeout)
        mine = best_of(args.repeat, "ours", kind, n, d, args.k, args.timeout)
        name = "naive full matrix" if baseline_method == "naive" else "plain NumPy loop"
        print(row(f"{title}: {name}", base, mine, None))
        if baseline_method == "naive":  # the full-scan floor this machine allows, for context
            plain = best_of(args.repeat, "plain", kind, n, d, args.k, args.timeout)
            print(row(f"{title}: plain NumPy loop", plain, mine, base))
        print(row(f"{title}: ours", mine, None, base))
        if args.exact_check:
            exact = best_of(1, "exact64", kind, n, d, args.k, args.timeout)
            print(row(f"{title}: float64 exact loop", exact, mine, base))
        if args.variants:
            for method, label in (
                ("ours-nolookahead", "no look-ahead"),
                ("ours-noprune", "no pruning"),
            ):
                variant = best_of(args.repeat, method, kind, n, d, args.k, args.timeout)
                print(row(f"{title}: ours, {label}", variant, mine, base))
        sys.stdout.flush()
    if args.suite in ("all", "select"):
        select_suite(args.select_sizes, args.k, args.workdir, args.timeout)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end {load}")


if __name__ == "__main__":
    main()
