"""Scale of one machine (issue 18, item 6): N short rows through `curate ingest` and
`curate embed` with the default embedder, each a whole process: rows/s, peak RSS, and
the embeddings table's versions and data files after the run.

    nice -n 10 python benchmarks/scale.py                    # 1,000,000 rows (hours on 2 cores)
    nice -n 10 python benchmarks/scale.py --rows 20000       # extrapolates the 1M time
    python benchmarks/scale.py --rows 200000 --embedder static:minilm --baseline 9a0f836
                                                    # the code of a revision beside this one

Rows are short single-turn instructions (30–200 characters each side), unique by index.
`curate embed` writes a checkpoint append per batch group and compacts at the end
(``Store.compact_embeddings``: LanceDB ``Table.optimize()``, which merges the fragments
and deletes the versions older than ``curate.store.embeddings.VERSION_GRACE``, 15
minutes, with the files only they hold); the table lines show what is left on disk: the latest version's fragments, the
version count, and the ``.lance`` data files in the table folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from oneoff import checkout, run  # noqa: E402  (a sibling script)

WORDS = (
    "data model train answer question list explain write short story poem code python "
    "function table summary email plan recipe travel history science math proof test "
    "review translate french german simple careful brief detailed example reason"
).split()


def short_pool(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            ask = " ".join(rng.choices(WORDS, k=rng.randint(5, 30)))
            answer = " ".join(rng.choices(WORDS, k=rng.randint(5, 30)))
            fh.write(json.dumps({"instruction": f"{i}: {ask}?", "output": answer}) + "\n")


def table_files(db: Path, name: str) -> dict:
    import lancedb

    from curate.store import embedding_table

    # The table's files as LanceDB keeps them on disk (read-only; the store hides its handle).
    table = lancedb.connect(str(db)).open_table(embedding_table(name))
    folder = db / f"{embedding_table(name)}.lance"
    return {
        "rows": table.count_rows(),
        "versions": len(table.list_versions()),
        "fragments": table.stats()["fragment_stats"]["num_fragments"],
        "data_files": len(list((folder / "data").glob("*.lance"))),
        "data_mb": sum(f.stat().st_size for f in (folder / "data").glob("*.lance")) / 2**20,
    }


def measure(code: Path, pool: Path, work: Path, embedder: str | None, env: dict) -> dict:
    """`curate ingest` and `curate embed` of ``pool`` with the curate in ``code``."""
    work.mkdir(parents=True, exist_ok=True)
    db = work / "db"
    ingest = run(code, ["ingest", str(pool), "--db", str(db), "--json"], work / "ingest.log", env)
    embed_args = ["embed", "--db", str(db), "--json"]
    if embedder:
        embed_args += ["--embedder", embedder]
    embed = run(code, embed_args, work / "embed.log", env)
    result = embed["result"] or {}
    return {
        "embedder": result.get("embedder"),
        "ingest": ingest,
        "embed": embed,
        "table": table_files(db, result.get("name", "minilm")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--embedder", default=None, help="spec (default: curate's default)")
    parser.add_argument("--baseline", help="also run the code of this git revision (ratios)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="curate-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    pool = work / "pool.jsonl"
    short_pool(pool, args.rows)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    # A first use exports (or distils) the embedder into the model cache; neither measured
    # run should pay that, so a 10-row warm-up pays it here.
    short_pool(work / "warmup.jsonl", 10)
    measure(ROOT, work / "warmup.jsonl", work / "warmup", args.embedder, env)
    runs = {}
    if args.baseline:
        code = checkout(args.baseline, work / "baseline-code")
        runs["baseline"] = measure(code, pool, work / "baseline", args.embedder, env)
    runs["current"] = measure(ROOT, pool, work / "current", args.embedder, env)
    print(f"{args.rows:,} short rows, embedder {runs['current']['embedder']}, work {work}")
    for label, r in runs.items():
        ingest, embed, files = r["ingest"], r["embed"], r["table"]
        rate = args.rows / embed["seconds"]
        print(f"{label}:")
        print(f"  ingest  {ingest['seconds']:8.1f} s  peak RSS {ingest['peak_rss_mb']:6.0f} MB")
        print(
            f"  embed   {embed['seconds']:8.1f} s  peak RSS {embed['peak_rss_mb']:6.0f} MB  "
            f"{rate:,.0f} rows/s (whole process)  progress lines {embed['progress_lines']}"
        )
        print(
            f"  table   {files['rows']:,} rows, {files['fragments']} fragments in the latest "
            f"version, {files['versions']} versions, {files['data_files']} data files "
            f"({files['data_mb']:.0f} MB)"
        )
        print(f"  1M rows at this rate: {1_000_000 / rate / 60:.0f} min of embedding")
    if "baseline" in runs:
        base, cur = runs["baseline"]["embed"], runs["current"]["embed"]
        print(
            f"current / baseline {args.baseline}: embed time "
            f"{cur['seconds'] / base['seconds']:.2f}x, "
            f"peak RSS {cur['peak_rss_mb'] / base['peak_rss_mb']:.2f}x"
        )
    (work / "scale.json").write_text(json.dumps({"rows": args.rows, **runs}, indent=2))


if __name__ == "__main__":
    main()
