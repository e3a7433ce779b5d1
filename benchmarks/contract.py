"""The accuracy contract of issue 18 between two databases of the same pool, e.g. the
baseline's and this checkout's of one `oneoff.py --keep DIR` run: K-center picks (1,000,
seed 0) under each one's embeddings, both subsets measured in the reference's space;
coverage radius (largest distance from a row to its nearest pick) and mean distance to
the nearest pick, each within 5% of the reference subset's.

    python benchmarks/contract.py DIR/baseline/db DIR/current/db   # minilm in both
    python benchmarks/contract.py DIR/baseline/db DIR/current/db --candidate-name int8_256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedders_cpu import coverage  # noqa: E402  (a sibling script)

LIMIT = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="database whose embeddings are the yardstick")
    parser.add_argument("candidate", help="database of the same pool, other embeddings")
    parser.add_argument("--name", default="minilm", help="embeddings name in the reference")
    parser.add_argument("--candidate-name", help="in the candidate (default: --name)")
    parser.add_argument("--picks", type=int, default=1000)
    args = parser.parse_args()

    from curate.store import Store
    from curate.strategies.kcenter import kcenter_greedy

    ref = Store(args.reference).load_vectors(args.name)
    cand = Store(args.candidate).load_vectors(args.candidate_name or args.name)
    if ref.ids != cand.ids:
        sys.exit("the two databases do not hold the same pool rows in the same order")
    print(f"{len(ref.ids):,} rows, {args.picks} picks; reference {ref.fingerprint}, "
          f"candidate {cand.fingerprint}")  # fmt: skip
    picks = {
        label: kcenter_greedy(v.matrix, None, args.picks, seed=0, device="cpu").indices
        for label, v in (("reference", ref), ("candidate", cand))
    }
    radius0, mean0 = coverage(ref.matrix, picks["reference"])
    radius, mean = coverage(ref.matrix, picks["candidate"])
    dr, dm = radius / radius0 - 1, mean / mean0 - 1
    kept = "kept" if dr <= LIMIT and dm <= LIMIT else "broken"
    print(f"radius {radius0:.4f} -> {radius:.4f} ({dr:+.1%}), "
          f"mean {mean0:.4f} -> {mean:.4f} ({dm:+.1%}): contract {kept}")  # fmt: skip


if __name__ == "__main__":
    main()
