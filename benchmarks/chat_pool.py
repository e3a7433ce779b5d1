"""A benchmark pool with the shape of real chat data, composed from the shared data pools.

ShareGPT-style conversations (``id`` + ``conversations`` of ``from``/``value``), written as
one JSON array on one line, as exports usually are. Each conversation strings together
question/answer pairs drawn (seeded) from LIMA, the Alpaca demo set, AlpacaEval's GPT-4
answers and the WizardLM/Vicuna answer sets under ``../shared/data``: mostly multi-turn,
median above 5,000 characters. About 4% are exact copies of earlier conversations (under a
new id), 4% near copies (one word changed, a turn dropped, whitespace or case changed), 2%
invalid records (no turns, a turn without text, an unknown role, a number as text) and
0.5% with one empty turn inside a long conversation. Never committed: it is rebuilt in
seconds.

    python benchmarks/chat_pool.py OUT.json [--rows 16000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
_ALT_DATA = Path("/work/shared/data")


def _data_dir() -> Path:
    for candidate in (DATA, _ALT_DATA):
        if (candidate / "pools" / "lima.json").exists():
            return candidate
    raise SystemExit(f"shared data not found under {DATA} (needs pools/lima.json)")


def load_pairs() -> list[tuple[str, str]]:
    """Every (question, answer) pair of the shared pools and answer sets."""
    data = _data_dir()
    pairs: list[tuple[str, str]] = []
    for rec in json.loads((data / "pools" / "lima.json").read_text()):
        for user, assistant in rec.get("history") or []:
            pairs.append((user, assistant))
        pairs.append((rec["instruction"], rec["output"]))
    for rec in json.loads((data / "pools" / "alpaca_en_demo.json").read_text()):
        question = rec["instruction"] + (f"\n\n{rec['input']}" if rec.get("input") else "")
        pairs.append((question, rec["output"]))
    for rec in json.loads((data / "eval" / "alpaca_eval_gpt4_outputs.json").read_text()):
        pairs.append((rec["instruction"], rec["output"]))
    for name, key in (
        ("wizardlm_gpt35_answers.jsonl", "Instruction"),
        ("vicuna_gpt35_answers.jsonl", "text"),
    ):
        for line in (data / "eval" / name).read_text().splitlines():
            rec = json.loads(line)
            pairs.append((rec[key], rec["answer"]))
    return [(q.strip(), a.strip()) for q, a in pairs if q.strip() and a.strip()]


def _turns(pairs: list[tuple[str, str]]) -> list[dict]:
    turns = []
    for question, answer in pairs:
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return turns


def _near_copy(conv: list[dict], rng: random.Random) -> list[dict]:
    conv = [dict(t) for t in conv]
    kind = rng.randrange(4)
    if kind == 0 and len(conv) > 2:  # the last exchange dropped
        return conv[:-2]
    turn = conv[rng.randrange(len(conv))]
    words = turn["value"].split(" ")
    if kind == 1:  # one word changed
        i = rng.randrange(len(words))
        words[i] = words[i].upper() if words[i].islower() else words[i].lower() + "s"
        turn["value"] = " ".join(words)
    elif kind == 2:  # whitespace: doubled spaces
        turn["value"] = "  ".join(words)
    else:  # punctuation at the end
        turn["value"] = turn["value"].rstrip(".!?") + "!"
    return conv


def _invalid(rng: random.Random, pairs: list[tuple[str, str]]) -> dict:
    conv = _turns(rng.sample(pairs, 2))
    kind = rng.randrange(4)
    if kind == 0:
        conv = []
    elif kind == 1:
        del conv[1]["value"]
    elif kind == 2:
        conv[2]["from"] = "narrator"
    else:
        conv[3]["value"] = 42
    return {"conversations": conv}


def build(rows: int = 16000, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    pairs = load_pairs()
    records: list[dict] = []
    good: list[dict] = []  # valid conversations, the ones copied
    for i in range(rows):
        roll = rng.random()
        rid = f"conv-{i:06d}"
        if roll < 0.02:
            records.append({"id": rid, **_invalid(rng, pairs)})
            continue
        if roll < 0.06 and good:
            source = rng.choice(good[-200:])
            records.append({"id": rid, "conversations": [dict(t) for t in source["conversations"]]})
            continue
        if roll < 0.10 and good:
            source = rng.choice(good[-200:])
            records.append({"id": rid, "conversations": _near_copy(source["conversations"], rng)})
            continue
        n_pairs = 1 if rng.random() < 0.08 else rng.randint(2, 9)
        conv = _turns(rng.sample(pairs, n_pairs))
        if roll < 0.105 and len(conv) > 4:  # one empty turn inside a long conversation
            conv[rng.randrange(1, len(conv) - 1)]["value"] = ""
        else:
            good.append({"conversations": conv})
        records.append({"id": rid, "conversations": conv})
    return records


def describe(records: list[dict]) -> str:
    convs = [r["conversations"] for r in records if r.get("conversations")]
    chars = [
        sum(len(t.get("value") or "") if isinstance(t.get("value"), str) else 0 for t in c)
        for c in convs
    ]
    multi = sum(len(c) > 2 for c in convs)
    return (
        f"{len(records):,} records, {multi / len(records):.0%} multi-turn, "
        f"median {statistics.median(chars):,.0f} chars, "
        f"{sum(chars) / 1e6:,.1f} M chars in all"
    )


def write(path: str | Path, rows: int = 16000, seed: int = 0) -> str:
    records = build(rows, seed)
    Path(path).write_text(json.dumps(records, ensure_ascii=False))
    return describe(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.out}: {write(args.out, args.rows, args.seed)}")  # noqa: T201


if __name__ == "__main__":
    main()
