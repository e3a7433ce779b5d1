"""Pool hygiene: how well `curate dedup` / `curate decontaminate` find what was planted, what
they flag on the shared pools, and what dedup costs at 1M rows against a baseline.

Three parts (all by default):

``labels``   the labelled sample behind dedup's default threshold. The shared pools (LIMA +
             the Alpaca demo, 2,015 rows) plus 6 planted near duplicates of each of 150
             rows drawn with seed 0 (kinds below; each labelled a duplicate of its
             original), deduplicated at every (shingle, threshold) of a grid. A flagged
             row is a true positive when its group holds its own original; every other
             flagged row (a real row grouped with another real row) is printed for a check
             by hand and counted as a false positive unless listed in HAND_LABELLED_DUPES.
``eval``     planted eval questions: 150 questions of the shared eval sets, drawn with seed
             0, planted into the same pool in 4 forms (kinds below); recall per form at the
             defaults, and rows flagged on the shared pools as they are.
``scale``    MinHash dedup of synthetic short rows (1% near duplicates) read from a LanceDB
             pool, at 200k and 1M rows: `curate dedup` (rensa signatures, NumPy banding,
             a memory-mapped signature file), its rerun on the unchanged pool, and at 200k
             the plain library pass as the baseline: datasketch's MinHash + MinHashLSH over
             the whole pool in memory, same shingles and threshold. Each in its own process
             pinned to 2 cores (peak RSS is that process's high-water mark).

    python benchmarks/hygiene.py                       # everything (~10 min on 2 cores)
    python benchmarks/hygiene.py --part labels
    python benchmarks/hygiene.py --part scale --rows 200000
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
POOLS = [SHARED / "pools" / "lima.json", SHARED / "pools" / "alpaca_en_demo.json"]
EVALS = sorted((SHARED / "eval").glob("*"))
HAND_LABELLED_DUPES: set[frozenset[str]] = set()  # real pairs judged duplicates by hand


# ----------------------------------------------------------------------------- planting
def _words_edit(text: str, rng: random.Random, rate: float, mode: str) -> str:
    words = text.split()
    out = []
    for w in words:
        if rng.random() < rate:
            if mode == "drop":
                continue
            w = rng.choice(["the", "a", "very", "really", "also"])
        out.append(w)
    return " ".join(out)


def dup_kinds(row: dict, rng: random.Random) -> dict[str, dict]:
    out = row.get("output") or ""
    return {
        "regen-prefix": {**row, "instruction": "2 / 2 " + row["instruction"]},
        "case-punct": {**row, "instruction": row["instruction"].upper().rstrip("?.!") + " !!"},
        "replace-5%": {**row, "output": _words_edit(out, rng, 0.05, "replace")},
        "drop-5%": {**row, "output": _words_edit(out, rng, 0.05, "drop")},
        "appended": {**row, "output": out + "\n\nLet me know if you need anything else!"},
        "truncated-90%": {**row, "output": out[: int(len(out) * 0.9)]},
    }


def _base_pool(db: Path) -> list[dict]:
    """Ingest the shared pools into ``db``; their canonical rows in pool order."""
    from curate.ingest import ingest
    from curate.store import Store

    ingest(Store(db), [str(p) for p in POOLS])
    return Store(db).read_pool().to_pylist()


def _add(db: Path, rows: list[dict]) -> dict[str, int]:
    """Ingest ``rows`` (each with an ``id``) into ``db``; pool position of every id."""
    from curate.ingest import ingest
    from curate.store import Store

    path = db.parent / f"{db.name}-planted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ingest(Store(db), [str(path)])
    ids = Store(db).read_pool(["id"])["id"].to_pylist()
    return {i: p for p, i in enumerate(ids)}


# ----------------------------------------------------------------------------- labels
def part_labels(work: Path, planted_rows: int = 150) -> None:
    from curate.hygiene.dedup import DedupSettings, dedup
    from curate.hygiene.text import row_text
    from curate.store import Store

    rng = random.Random(0)
    db = work / "labels"
    base = _base_pool(db)
    single = [i for i, r in enumerate(base) if not r["messages"]]
    originals = rng.sample(single, planted_rows)
    planted, planted_of = [], {}
    for i in originals:
        for kind, row in dup_kinds(base[i], rng).items():
            fields = {k: row[k] for k in ("instruction", "input", "output")}
            planted.append({"id": f"planted-{i}-{kind}", **fields})
            planted_of[planted[-1]["id"]] = (i, kind)
    negatives, negative_of = [], {}
    for i in originals:  # hard negatives: another example that shares much of this one's text
        other, third = (base[j] for j in rng.sample(single, 2))  # the two negatives must
        out, other_out = base[i]["output"], third["output"]  # not resemble each other
        half = {**base[i], "output": out[: len(out) // 2] + other_out[len(other_out) // 2 :]}
        for kind, row in (
            ("other-answer", {**base[i], "output": other["output"]}),
            ("half-answer", half),
        ):
            fields = {k: row[k] for k in ("instruction", "input", "output")}
            negatives.append({"id": f"negative-{i}-{kind}", **fields})
            negative_of[negatives[-1]["id"]] = (i, kind)
    position = _add(db, planted + negatives)
    # position -> (original, kind); a variant equal to its original was dropped at ingest
    truth = {position[pid]: v for pid, v in planted_of.items() if pid in position}
    hard = {position[pid]: v for pid, v in negative_of.items() if pid in position}
    store = Store(db)
    family = {i: i for i in originals} | {p: v[0] for p, v in {**truth, **hard}.items()}
    kinds = list(dup_kinds(base[0], rng))
    print(f"labelled sample: {len(base):,} pool rows + {len(truth):,} planted near duplicates "
          f"({planted_rows} originals x {len(kinds)} kinds, a variant equal to its original "
          f"dropped at ingest) + {len(hard)} hard negatives (the original's prompt with another "
          "row's answer, or with half of its own answer and half of another's)")  # fmt: skip
    print(
        "pairs in one group: labelled duplicate (true) or labelled not (false); unlabelled "
        "pairs (real rows, or a negative with the row whose answer it took) are not counted"
    )
    print("shingle  threshold  true  false  unlabelled  precision  recall  " + "  ".join(kinds))
    pool = None
    for shingle in (3, 5):
        for threshold in (0.5, 0.6, 0.7, 0.8, 0.9):
            dedup(store, DedupSettings(threshold=threshold, shingle=shingle))
            rows = store.hygiene_result("dedup").rows.to_pylist()
            group_of = {r["position"]: r["group"] for r in rows}
            members: dict[int, list[int]] = {}
            for r in rows:
                members.setdefault(r["group"], []).append(r["position"])
            true = false = 0
            unlabelled = []
            for group in members.values():
                for a_i, a in enumerate(group):
                    for b in group[a_i + 1 :]:
                        if a in family and b in family and family[a] == family[b]:
                            if a in hard or b in hard:
                                false += 1
                            else:
                                true += 1
                        else:
                            unlabelled.append((a, b))
            found: dict[str, int] = dict.fromkeys(kinds, 0)
            of_kind: dict[str, int] = dict.fromkeys(kinds, 0)
            for p, (orig, kind) in truth.items():
                found[kind] += p in group_of and group_of.get(orig) == group_of[p]
                of_kind[kind] += 1
            recall = sum(found.values()) / len(truth)
            precision = true / (true + false) if true + false else 1.0
            by_kind = "  ".join(f"{found[k] / of_kind[k]:>{len(k)}.0%}" for k in kinds)
            print(f"{shingle:>7}  {threshold:>9}  {true:>4}  {false:>5}  {len(unlabelled):>10}  "
                  f"{precision:>9.1%}  {recall:>6.1%}  {by_kind}")  # fmt: skip
            if unlabelled and (shingle, threshold) in ((3, 0.5), (3, 0.7)):
                pool = pool or store.read_pool().to_pylist()
                real = [(a, b) for a, b in unlabelled if a not in family and b not in family]
                print(f"      {len(real)} unlabelled pairs of real rows; the first ones, checked "
                      "by hand in benchmarks/README.md:")  # fmt: skip
                for a, b in real[:5]:
                    print(f"      {row_text(pool[a])[:70]!r} ~ {row_text(pool[b])[:70]!r}")


# ----------------------------------------------------------------------------- eval
def eval_kinds(question: str, rng: random.Random) -> dict[str, str]:
    return {
        "verbatim": question,
        "regen-prefix": "2 / 2 " + question,
        "inside-a-prompt": f"Please help me with this task. {question} Keep the answer short.",
        "drop-10%": _words_edit(question, rng, 0.10, "drop"),
    }


def part_eval(work: Path, planted_questions: int = 150) -> None:
    from curate.evaluation.eval_sets import load_eval_set
    from curate.hygiene.decontaminate import DecontaminateSettings, decontaminate
    from curate.hygiene.text import words
    from curate.store import Store

    rng = random.Random(0)
    db = work / "eval"
    base = _base_pool(db)
    report = decontaminate(Store(db), DecontaminateSettings(tuple(map(str, EVALS))))
    print(f"shared pools ({len(base):,} rows) against the shared eval sets, 8-grams >= 0.5: "
          f"{report.flagged} rows flagged")  # fmt: skip
    for path, counts in report.per_set.items():
        print(f"  {Path(path).name}: {counts['questions']} questions, "
              f"{counts['matched_questions']} matched, {counts['rows']} pool rows")  # fmt: skip
    questions = [
        (path, item)
        for path in EVALS
        for item in load_eval_set(path).items
        if len(words(item.question)) >= 8  # shorter ones match only whole prompts
    ]
    chosen = rng.sample(questions, planted_questions)
    planted, planted_of = [], {}
    for path, item in chosen:
        for kind, text in eval_kinds(item.question, rng).items():
            pid = f"q-{len(planted)}"
            planted.append({"id": pid, "instruction": text, "output": f"planted answer {pid}"})
            planted_of[pid] = (str(path), item.id, kind)
    position = _add(db, planted)
    truth = {position[pid]: v for pid, v in planted_of.items() if pid in position}
    for ngram, overlap in ((8, 0.5), (13, 0.5), (8, 0.8)):
        store = Store(db)
        settings = DecontaminateSettings(tuple(map(str, EVALS)), ngram, overlap)
        report = decontaminate(store, settings)
        rows = store.hygiene_result("decontaminate").rows.to_pylist()
        hits = {(r["position"], r["eval_set"], r["eval_id"]) for r in rows}
        by_kind: dict[str, int] = {}
        for p, (path, qid, kind) in truth.items():
            by_kind[kind] = by_kind.get(kind, 0) + ((p, path, qid) in hits)
        real = {r["position"] for r in rows if r["position"] not in truth}
        print(f"planted {planted_questions} questions x {len(by_kind)} forms, {ngram}-grams >= "
              f"{overlap}: recall " + ", ".join(f"{k} {v / planted_questions:.0%}"
                                              for k, v in by_kind.items())
              + f"; real pool rows flagged {len(real)}")  # fmt: skip


# ----------------------------------------------------------------------------- scale
CHILD = r"""
import json, resource, sys, time
mode, db = sys.argv[1:3]
t = time.perf_counter()
if mode == "curate":
    from curate.hygiene.dedup import DedupSettings, dedup
    from curate.store import Store
    report = dedup(Store(db), DedupSettings())
    flagged = report.flagged
else:
    from datasketch import MinHash, MinHashLSH
    from curate.hygiene.text import row_text, shingles, words
    from curate.store import Store
    rows = Store(db).read_pool(["instruction", "input", "output", "messages"]).to_pylist()
    lsh = MinHashLSH(threshold=0.7, num_perm=128)  # curate dedup's defaults: 3-word shingles
    sigs = MinHash.bulk(
        ([s.encode() for s in shingles(words(row_text(r)), 3)] for r in rows), num_perm=128, seed=1
    )
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    # a row is flagged when an earlier row is a verified near duplicate of it
    flagged = sum(
        any(j < i and m.jaccard(sigs[j]) >= 0.7 for j in lsh.query(m)) for i, m in enumerate(sigs)
    )
print(json.dumps({"seconds": time.perf_counter() - t, "flagged": flagged,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthetic_rows(n: int, seed: int = 0):
    """Short instruction rows (12-40 words from a Zipf-like 20k-word vocabulary), 1% of them
    near duplicates (one word replaced) of an earlier row."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(vocab))))
    made: list[str] = []
    for i in range(n):
        if made and rng.random() < 0.01:
            words = rng.choice(made[-1000:]).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            text = " ".join(words)
        else:
            text = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(12, 40)))
        made.append(text)
        yield {"instruction": text, "output": f"answer {i}"}


def _child(mode: str, db: Path) -> dict:
    done = subprocess.run(
        ["taskset", "-c", "0,1", sys.executable, "-c", CHILD, mode, str(db)],
        capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_scale(work: Path, rows: int, baseline_rows: int) -> None:
    from curate.ingest import ingest
    from curate.store import Store

    sizes = sorted({min(rows, baseline_rows), rows})
    source = work / "synthetic.jsonl"
    with source.open("w", encoding="utf-8") as fh:
        for row in synthetic_rows(rows):
            fh.write(json.dumps(row) + "\n")
    for n in sizes:
        part = work / f"synthetic-{n}.jsonl"
        with source.open(encoding="utf-8") as src, part.open("w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice(src, n))
        db = work / f"scale-{n}"
        t = time.perf_counter()
        ingest(Store(db), [str(part)])
        print(f"scale: {n:,} synthetic rows ingested in {time.perf_counter() - t:.0f}s")
        ours = _child("curate", db)
        print(f"  curate dedup (rensa + NumPy bands, streamed): {ours['seconds']:.1f}s, "
              f"peak RSS {ours['peak_rss_mb']:,.0f} MB, {ours['flagged']:,} rows flagged")  # fmt: skip
        again = _child("curate", db)
        print(f"  rerun on the unchanged pool: {again['seconds']:.2f}s (no work), "
              f"peak RSS {again['peak_rss_mb']:,.0f} MB")  # fmt: skip
        if n > baseline_rows:
            continue
        base = _child("datasketch", db)
        print(f"  baseline, datasketch MinHash.bulk + MinHashLSH over the whole pool in memory: "
              f"{base['seconds']:.1f}s, peak RSS {base['peak_rss_mb']:,.0f} MB, "
              f"{base['flagged']:,} rows flagged")  # fmt: skip
        print(f"  ratio: {base['seconds'] / ours['seconds']:.1f}x faster, "
              f"{base['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x less peak memory")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["labels", "eval", "scale", "all"], default="all")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the scale part")
    parser.add_argument(
        "--baseline-rows",
        type=int,
        default=200_000,
        help="largest size the baseline runs at (it holds the pool and its LSH in memory: "
        "about 1.6 GB at 200k rows, so ~8 GB at 1M)",
    )
    args = parser.parse_args()
    if args.part in ("labels", "eval", "all") and not all(p.exists() for p in POOLS):
        sys.exit(f"{SHARED} is missing: the labels and eval parts read the shared pools")
    with tempfile.TemporaryDirectory(prefix="curate-hygiene-") as tmp:
        work = Path(tmp)
        if args.part in ("labels", "all"):
            part_labels(work)
        if args.part in ("eval", "all"):
            part_eval(work)
        if args.part in ("scale", "all"):
            part_scale(work, args.rows, args.baseline_rows)


if __name__ == "__main__":
    main()
