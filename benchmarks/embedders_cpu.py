"""The default embedder at CPU speed: MiniLM settings against the fp32, 256-token reference.

For each setting: rows/s over the same rows (one process, same load), then the accuracy
contract of issue 18: K-center picks under the setting, and both subsets (the setting's
and the reference's) measured in the reference space (fp32 MiniLM, 256 tokens): coverage
radius (largest distance from a row to its nearest pick) and mean distance to the nearest
pick; the setting keeps the contract when both are within 5% of the reference subset's.

    nice -n 10 python benchmarks/embedders_cpu.py --db DB --reference REF.npz [--rows 2000]

``--db`` holds the pool (``curate ingest`` of ``benchmarks/chat_pool.py``'s pool);
``--reference`` an ``.npz`` with ``ids`` and ``vectors`` made by the default embedder at
fp32 (``curate embed``, then exported; costs tens of minutes on 2 cores for 16k long rows,
so it is computed once and cached). Settings' vectors are cached beside it by name.

Settings: ``fp32-256`` (the reference itself, timed), ``fp32-128`` (MiniLM's training
length), ``bf16-256``/``bf16-128`` (bf16 weights, as ``--precision bf16``), and
``static-256``/``static-512``: ``static:minilm``, the model2vec-style static model
distilled offline from the local MiniLM (:mod:`curate.embedders.static`: each vocabulary
token's output, PCA to 256 dimensions, SIF weighting; a row is the mean of its tokens'
vectors); ``onnx-*``, ``onnx-int8-*``, ``openvino-*``, ``openvino-bf16-*``,
``openvino-int8-*``: MiniLM exported to ONNX Runtime / OpenVINO
(:mod:`curate.embedders.runtime`). ``--speed-only`` prints rows/s without the contract.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SETTINGS = (
    "fp32-256",
    "fp32-128",
    "bf16-256",
    "bf16-128",
    "onnx-256",
    "onnx-128",
    "onnx-int8-256",
    "onnx-int8-128",
    "openvino-256",
    "openvino-128",
    "openvino-bf16-256",
    "openvino-bf16-128",
    "openvino-int8-256",
    "openvino-int8-128",
    "static-256",
    "static-512",
)
# setting kind -> (embedder spec, precision)
KINDS = {
    "fp32": ("st:minilm", "fp32"),
    "bf16": ("st:minilm", "bf16"),
    "onnx": ("onnx:minilm", "fp32"),
    "onnx-int8": ("onnx-int8:minilm", "fp32"),
    "openvino": ("openvino:minilm", "fp32"),
    "openvino-bf16": ("openvino:minilm", "bf16"),
    "openvino-int8": ("openvino-int8:minilm", "fp32"),
    "static": ("static:minilm", "fp32"),
}


def pool_rows(db: str, ids: np.ndarray) -> list[dict]:
    from curate.store import Store

    table = Store(db).read_pool(["id", "instruction", "input", "output", "messages", "n_chars"])
    by_id = {r["id"]: r for r in table.to_pylist()}
    return [by_id[i] for i in ids]


def embedder(setting: str):
    """The embedder of a setting (``KIND-LENGTH``), loaded (exports or distils on first use)."""
    from curate.embedders import load_embedder

    kind, length = setting.rsplit("-", 1)
    spec, precision = KINDS[kind]
    model = load_embedder(spec, int(length), "cpu", precision)
    model.load()
    return model


def embed(model, rows: list[dict]) -> np.ndarray:
    out = np.zeros((len(rows), model.dim), np.float32)
    for indices, result in model.embed(rows):
        out[indices] = result.vectors
    return out


def coverage(reference: np.ndarray, picks: np.ndarray) -> tuple[float, float]:
    """(radius, mean) of each row's distance to its nearest pick, in the reference space."""
    centres = reference[picks]
    best = np.full(len(reference), np.inf, np.float32)
    for start in range(0, len(centres), 256):
        c = centres[start : start + 256]
        sq = (reference**2).sum(1)[:, None] + (c**2).sum(1)[None] - 2 * reference @ c.T
        best = np.minimum(best, np.maximum(sq, 0).min(1))
    d = np.sqrt(best)
    return float(d.max()), float(d.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument(
        "--rows", type=int, default=0, help="rows spread over the reference (0: all)"
    )
    parser.add_argument("--picks", type=int, default=1000)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--speed-rows", type=int, default=256, help="rows timed per setting")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes per setting")
    parser.add_argument(
        "--speed-only", action="store_true", help="rows/s only (no contract, no full embed)"
    )
    args = parser.parse_args()

    from curate.strategies.kcenter import kcenter_greedy

    ref = np.load(args.reference)
    ids, reference = ref["ids"], ref["vectors"]
    if args.rows:
        keep = np.linspace(0, len(ids) - 1, args.rows).round().astype(int)
        ids, reference = ids[keep], reference[keep]
    rows = pool_rows(args.db, ids)
    chars = np.array([r["n_chars"] for r in rows])
    print(f"{len(rows):,} rows (median {np.median(chars):,.0f} chars), {args.picks} picks")
    timed = [rows[i] for i in np.linspace(0, len(rows) - 1, args.speed_rows).round().astype(int)]
    ref_picks = kcenter_greedy(reference, None, args.picks, seed=0, device="cpu").indices
    ref_radius, ref_mean = coverage(reference, ref_picks)
    print(
        f"{'setting':<19}{'rows/s':>8}{'× 1st':>8}{'radius':>9}{'Δ':>8}{'mean':>9}{'Δ':>8}"
        f"{'min cos':>9}  contract"
    )
    settings = args.settings.split(",")
    models = {}
    for setting in settings:
        started = time.perf_counter()
        models[setting] = embedder(setting)
        embed(models[setting], timed[:8])  # warm-up (and the export or distillation)
        print(f"  ({setting} ready in {time.perf_counter() - started:.0f} s)", flush=True)
    # Speed: settings in turn, --rounds times; each keeps its best round, so a burst of
    # load from other jobs on the shared cores does not land on one setting alone.
    best = dict.fromkeys(settings, 0.0)
    for _ in range(args.rounds):
        for setting in settings:
            started = time.perf_counter()
            embed(models[setting], timed)
            best[setting] = max(best[setting], len(timed) / (time.perf_counter() - started))
    base_rate = best[settings[0]]
    if args.speed_only:
        for setting in settings:
            print(f"{setting:<19}{best[setting]:>8.1f}{best[setting] / base_rate:>7.2f}×")
        return
    for setting in settings:
        cache = args.reference.with_name(f"{args.reference.stem}.{setting}.{len(ids)}.npy")
        if setting == "fp32-256":
            vectors = reference
        elif cache.exists():
            vectors = np.load(cache)
        else:
            vectors = embed(models[setting], rows)
            np.save(cache, vectors)
        picks = kcenter_greedy(vectors, None, args.picks, seed=0, device="cpu").indices
        radius, mean = coverage(reference, picks)
        dr, dm = radius / ref_radius - 1, mean / ref_mean - 1
        keeps = "kept" if dr <= 0.05 and dm <= 0.05 else "broken"
        cosine = (
            float(((vectors * reference).sum(1)).min())
            if vectors.shape == reference.shape
            else float("nan")
        )
        rate = best[setting]
        print(
            f"{setting:<19}{rate:>8.1f}{rate / base_rate:>7.2f}×{radius:>9.4f}{dr:>+8.1%}"
            f"{mean:>9.4f}{dm:>+8.1%}{cosine:>9.4f}  {keeps}",
            flush=True,
        )


if __name__ == "__main__":
    main()
