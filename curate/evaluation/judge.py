"""Pairwise LLM judging through any OpenAI-compatible chat-completions endpoint.

The prompt is the DiverseEvol paper's GPT-4 judge prompt (Appendix A; the Vicuna
template): the judge scores two answers 1–10 on the first line of its reply. Each pair
is asked in both orders to cancel position bias; a question is a win when the model's
answer scores higher over the two orders together (win+win, win+tie), a tie when even,
a loss otherwise. WS = (W − L) / N + 1.

Replies are cached per prompt in a JSONL file, so a rerun asks only what is missing. A
reply whose first line does not hold exactly two numbers is counted as unparseable,
reported, and not cached (the next run asks again).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from curate.errors import EvalError
from curate.evaluation.endpoints import join_chat_path, redact, redact_text, split_credentials
from curate.files import jsonl_lines
from curate.progress import NO_PROGRESS, Progress

JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
JUDGE_TEMPLATE = """[Question]
{question}

[The Start of Assistant 1's Answer]
{answer_1}
[The End of Assistant 1's Answer]

[The Start of Assistant 2's Answer]
{answer_2}
[The End of Assistant 2's Answer]

[System]
We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above.
Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.
Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment.
"""  # noqa: E501 (the paper's text, verbatim)

RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def parse_scores(reply: str) -> tuple[float, float] | None:
    """The two scores on the reply's first line ("8 7" or "8, 7"), as the paper's parser
    reads them; None when that line holds anything else."""
    lines = reply.strip().splitlines()
    tokens = lines[0].replace(",", " ").split() if lines else []
    if len(tokens) != 2:
        return None
    try:
        return float(tokens[0]), float(tokens[1])
    except ValueError:
        return None


@dataclass
class ChatClient:
    """A minimal chat-completions client (urllib; no SDK) with retries and timeouts."""

    url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_tokens: int = 512
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        # user-info is no part of the request URL; its key is the fallback API key
        self._plain_url, url_key = split_credentials(self.url)
        self.api_key = self.api_key or url_key

    @property
    def endpoint(self) -> str:
        """The URL requests go to (its query string, which may hold a key, kept)."""
        return join_chat_path(self._plain_url)

    @property
    def shown(self) -> str:
        """The endpoint as messages and files show it: credentials replaced by ``***``."""
        return redact(self.endpoint)

    def _safe(self, text: str) -> str:
        return redact_text(text, self.url, (self.api_key,))

    def check_reachable(self) -> None:
        """Fail fast (before any generation) when nothing listens at the endpoint."""
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EvalError(f"judge URL {redact(self.url)!r} is not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection(
                (parts.hostname, port), timeout=min(self.timeout_s, 10)
            ).close()
        except OSError as err:
            raise EvalError(
                self._safe(f"judge endpoint {self.shown} is unreachable ({err})")
            ) from None

    def complete(self, system: str, user: str) -> str:
        """The assistant message of one chat completion (temperature 0)."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
                "temperature": 0,
                "max_tokens": self.max_tokens,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        problem, retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(self._delay(attempt, retry_after))
            request = urllib.request.Request(
                self.endpoint, data=body, headers=headers, method="POST"
            )
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as err:
                if err.code not in RETRY_STATUS:
                    detail = err.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
                    hint = "; check the API key variable" if err.code in (401, 403) else ""
                    raise EvalError(
                        self._safe(
                            f"judge endpoint {self.shown} answered HTTP {err.code}{hint}: {detail}"
                        )
                    ) from None
                problem = f"HTTP {err.code}"
                retry_after = err.headers.get("Retry-After") if err.headers else None
                continue
            except TimeoutError:
                problem = f"no answer within {self.timeout_s:g}s"
                continue
            except urllib.error.URLError as err:
                timed_out = isinstance(err.reason, TimeoutError)
                problem = (
                    f"no answer within {self.timeout_s:g}s"
                    if timed_out
                    else f"unreachable ({err.reason})"
                )
                continue
            except (ConnectionError, http.client.HTTPException) as err:
                problem = f"connection failed ({type(err).__name__})"
                continue
            return self._message(raw)
        raise EvalError(
            self._safe(f"judge endpoint {self.shown}: {problem} after {self.max_retries + 1} tries")
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff; a 429's Retry-After (seconds) is honoured up to the cap."""
        delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        if retry_after:
            try:
                delay = min(max(delay, float(retry_after)), self.max_backoff_s)
            except ValueError:
                pass
        return delay

    def _message(self, raw: bytes) -> str:
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            shown = raw[:200].decode("utf-8", "replace")
            raise EvalError(
                self._safe(f"judge endpoint {self.shown} sent no chat completion: {shown!r}")
            ) from None
        return content if isinstance(content, str) else ""


@dataclass(frozen=True)
class Pair:
    """One question to judge: the model's answer against an opponent's (the reference)."""

    id: str
    question: str
    answer: str
    opponent: str


@dataclass
class JudgeReport:
    questions: list[dict[str, Any]]
    asked: int = 0
    cached: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        win, tie, lose = (self.counts.get(k, 0) for k in ("win", "tie", "lose"))
        judged = win + tie + lose
        return {
            "win": win,
            "tie": tie,
            "lose": lose,
            "judged": judged,
            "unparseable_questions": self.counts.get("unparseable", 0),
            "unparseable_replies": sum(
                v["scores"] is None for q in self.questions for v in q["orders"].values()
            ),
            "ws": (win - lose) / judged + 1 if judged else None,
        }


class ReplyCache:
    """Parsed judge replies keyed by a hash of (judge model, prompt); append-only JSONL."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.torn = False  # the file ends mid-line (a crash while appending)
        if path is not None and path.exists():
            text = path.read_text(encoding="utf-8")
            self.torn = bool(text) and not text.endswith("\n")
            for _, line in jsonl_lines(text):
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash: ask that prompt again

    @staticmethod
    def key(model: str, prompt: str) -> str:
        return hashlib.sha256(json.dumps([model, JUDGE_SYSTEM, prompt]).encode("utf-8")).hexdigest()

    def add(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.entries[entry["key"]] = entry
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(
                        ("\n" if self.torn else "") + json.dumps(entry, ensure_ascii=False) + "\n"
                    )
                self.torn = False


def _prompts(pair: Pair) -> dict[str, str]:
    """Both orders: ``model_first`` puts the model's answer as Assistant 1."""
    return {
        "model_first": JUDGE_TEMPLATE.format(
            question=pair.question, answer_1=pair.answer, answer_2=pair.opponent
        ),
        "model_second": JUDGE_TEMPLATE.format(
            question=pair.question, answer_1=pair.opponent, answer_2=pair.answer
        ),
    }


def _outcome(orders: dict[str, dict[str, Any]]) -> tuple[str, int | None]:
    signs = []
    for verdict in orders.values():
        if verdict["scores"] is not None:
            model_score, opponent_score = verdict["scores"]
            signs.append((model_score > opponent_score) - (model_score < opponent_score))
    if not signs:
        return "unparseable", None
    total = sum(signs)
    return ("win", 1) if total > 0 else ("tie", 0) if total == 0 else ("lose", -1)


def judge_pairs(
    client: ChatClient,
    pairs: list[Pair],
    cache_path: Path | None = None,
    workers: int = 4,
    progress: Progress = NO_PROGRESS,
) -> JudgeReport:
    """Judge every pair in both orders, asking the endpoint only for uncached prompts."""
    cache = ReplyCache(cache_path)
    jobs: list[tuple[int, str, str, str]] = []  # (pair index, order, prompt, cache key)
    for index, pair in enumerate(pairs):
        for order, prompt in _prompts(pair).items():
            jobs.append((index, order, prompt, ReplyCache.key(client.model, prompt)))
    replies: dict[str, str] = {}
    todo = [job for job in jobs if job[3] not in cache.entries]
    if len(jobs) > len(todo):
        progress.advance(len(jobs) - len(todo))

    failed = threading.Event()  # after one hard failure, queued prompts are not sent

    def ask(job: tuple[int, str, str, str]) -> None:
        if failed.is_set():
            return
        try:
            reply = client.complete(JUDGE_SYSTEM, job[2])
        except BaseException:
            failed.set()
            raise
        replies[job[3]] = reply
        scores = parse_scores(reply)
        if scores is not None:
            cache.add({"key": job[3], "scores": list(scores), "reply": reply})
        progress.advance(1)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(ask, job) for job in todo]
        wait(futures, return_when=FIRST_EXCEPTION)
    for future in futures:
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]

    report = JudgeReport(questions=[], asked=len(todo), cached=len(jobs) - len(todo))
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for index, order, _, key in jobs:
        entry = cache.entries.get(key)
        if entry is not None:
            first, second = entry["scores"]
            scores = (first, second) if order == "model_first" else (second, first)
            by_pair.setdefault(index, {})[order] = {"scores": list(scores)}
        else:
            reply = replies.get(key, "")
            by_pair.setdefault(index, {})[order] = {"scores": None, "reply": reply[:500]}
    for index, pair in enumerate(pairs):
        orders = by_pair[index]
        outcome, score = _outcome(orders)
        report.counts[outcome] = report.counts.get(outcome, 0) + 1
        report.questions.append(
            {"id": pair.id, "outcome": outcome, "score": score, "orders": orders}
        )
    return report
