"""The pool sample and the held-out questions of ``quality.py`` (seeded, from ``../shared/data``)."""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def read_pools() -> tuple[list[dict], list[dict]]:
    lima = json.loads((SHARED / "pools" / "lima.json").read_text(encoding="utf-8"))
    alpaca = json.loads((SHARED / "pools" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    return lima, alpaca


def build_pool(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` examples, half LIMA and half Alpaca, seeded; 0: every row of both."""
    lima, alpaca = read_pools()
    rng = random.Random(seed)
    if rows:
        chosen = [("lima", r) for r in rng.sample(lima, rows // 2)]
        chosen += [("alpaca", r) for r in rng.sample(alpaca, rows - rows // 2)]
    else:
        chosen = [("lima", r) for r in lima] + [("alpaca", r) for r in alpaca]
    rng.shuffle(chosen)
    with path.open("w", encoding="utf-8") as fh:
        for source, record in chosen:
            fh.write(json.dumps({**record, "category": source}, ensure_ascii=False) + "\n")


def build_eval_set(path: Path, vicuna: int, wizardlm: int, alpaca_eval: int, seed: int = 0) -> dict[str, int]:  # fmt: skip
    """Held-out questions with reference answers, ids prefixed by their set."""
    from curate.files import jsonl_lines

    rng = random.Random(seed)

    def jsonl(name: str) -> list[dict]:
        text = (SHARED / "eval" / name).read_text(encoding="utf-8")
        return [json.loads(line) for _, line in jsonl_lines(text)]

    def sample(n: int, total: int) -> list[int]:
        return sorted(rng.sample(range(total), min(n, total)))

    rows = []
    vic = jsonl("vicuna_gpt35_answers.jsonl")
    rows += [{"id": f"vicuna-{i}", "instruction": vic[i]["text"], "output": vic[i]["answer"]} for i in sample(vicuna, len(vic))]  # fmt: skip
    wiz = jsonl("wizardlm_gpt35_answers.jsonl")
    rows += [{"id": f"wizardlm-{i}", "instruction": wiz[i]["Instruction"], "output": wiz[i]["answer"]} for i in sample(wizardlm, len(wiz))]  # fmt: skip
    ae = json.loads((SHARED / "eval" / "alpaca_eval_gpt4_outputs.json").read_text(encoding="utf-8"))
    rows += [{"id": f"alpacaeval-{i}", "instruction": ae[i]["instruction"], "output": ae[i]["output"]} for i in sample(alpaca_eval, len(ae))]  # fmt: skip
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {s: sum(r["id"].startswith(s) for r in rows) for s in ("vicuna", "wizardlm", "alpacaeval")}  # fmt: skip
