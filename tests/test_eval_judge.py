"""The pairwise judge against a real HTTP server on 127.0.0.1 that speaks the
chat-completions protocol: retries on 429, timeouts, unparseable replies, the cache."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from curate.errors import EvalError
from curate.evaluation.judge import ChatClient, Pair, judge_pairs, parse_scores


class FakeJudge(ThreadingHTTPServer):
    """Scores an answer 8 when it contains GOOD, else 3; replies with prose (no scores)
    when the question asks for it. ``script`` lists failures for the first requests."""

    daemon_threads = True

    def __init__(self, script: list[str] | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = list(script or [])
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeJudge

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), **body}
            )
            step = self.server.script.pop(0) if self.server.script else "ok"
        if step == "429":
            return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
        if step == "503":
            return self._send(503, {"error": "overloaded"})
        if step == "401":
            return self._send(401, {"error": "bad key"})
        if step == "sleep":
            time.sleep(1.0)  # longer than the client's timeout
        prompt = body["messages"][-1]["content"]
        if "[The Start of Assistant 2's Answer]" not in prompt:
            return self._send(200, {"choices": [{"message": {"content": "5 5"}}]})
        first = prompt.split("[The Start of Assistant 1's Answer]")[1].split("[The End")[0]
        second = prompt.split("[The Start of Assistant 2's Answer]")[1].split("[The End")[0]
        if "PROSE" in prompt.split("[The Start")[0]:
            reply = "Both assistants did well.\nNo scores here."
        else:
            reply = f"{8 if 'GOOD' in first else 3} {8 if 'GOOD' in second else 3}\nBecause."
        self._send(
            200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}
        )

    def _send(self, status: int, payload: dict, headers: dict | None = None):
        blob = json.dumps(payload).encode()
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


@pytest.fixture
def judge_server():
    servers = []

    def start(script=None) -> FakeJudge:
        server = FakeJudge(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


PAIRS = [
    Pair("win", "Q1", "GOOD answer", "weak answer"),
    Pair("lose", "Q2", "weak answer", "GOOD answer"),
    Pair("tie", "Q3", "GOOD one", "GOOD two"),
    Pair("prose", "Q4 PROSE please", "GOOD answer", "weak answer"),
]


def _client(server: FakeJudge, **kwargs) -> tuple[ChatClient, list[float]]:
    delays: list[float] = []
    settings = {"timeout_s": 0.5, "max_retries": 3, "backoff_s": 0.01, **kwargs}
    return ChatClient(
        server.url, "judge-1", api_key="sk-test", sleep=delays.append, **settings
    ), delays


def test_both_orders_retries_and_unparseable_replies_are_counted(judge_server, tmp_path):
    server = judge_server(["429", "sleep"])
    client, delays = _client(server)
    cache = tmp_path / "run.judge-cache.jsonl"
    report = judge_pairs(client, PAIRS, cache, workers=1)

    outcomes = {q["id"]: q["outcome"] for q in report.questions}
    assert outcomes == {"win": "win", "lose": "lose", "tie": "tie", "prose": "unparseable"}
    metrics = report.metrics()
    assert (metrics["win"], metrics["tie"], metrics["lose"], metrics["judged"]) == (1, 1, 1, 3)
    assert metrics["unparseable_questions"] == 1 and metrics["unparseable_replies"] == 2
    assert metrics["ws"] == pytest.approx((1 - 1) / 3 + 1)
    # 8 prompts + one retry after the 429 + one after the timeout, each after a backoff
    assert len(server.requests) == 10 and len(delays) == 2
    assert all(r["path"] == "/v1/chat/completions" for r in server.requests)
    assert (
        server.requests[0]["auth"] == "Bearer sk-test" and server.requests[0]["model"] == "judge-1"
    )
    assert server.requests[0]["messages"][0]["role"] == "system"
    win = next(q for q in report.questions if q["id"] == "win")
    assert win["orders"] == {
        "model_first": {"scores": [8.0, 3.0]},
        "model_second": {"scores": [8.0, 3.0]},
    }
    prose = next(q for q in report.questions if q["id"] == "prose")
    assert prose["orders"]["model_first"]["reply"].startswith("Both assistants did well.")
    # both orders were asked: the model's answer appears once as Assistant 1, once as 2
    asked = [
        r["messages"][1]["content"] for r in server.requests if "Q1" in r["messages"][1]["content"]
    ]
    assert {a.split("Assistant 1's Answer]\n")[1].split("\n")[0] for a in asked} == {
        "GOOD answer",
        "weak answer",
    }

    # rerun: only the unparseable prompts are asked again
    before = len(server.requests)
    again = judge_pairs(client, PAIRS, cache, workers=2)
    assert len(server.requests) - before == 2 and again.asked == 2 and again.cached == 6
    assert [q["outcome"] for q in again.questions] == [q["outcome"] for q in report.questions]


def test_a_changed_answer_is_judged_again_and_a_torn_cache_line_is_survived(judge_server, tmp_path):
    server = judge_server()
    client, _ = _client(server)
    cache = tmp_path / "cache.jsonl"
    judge_pairs(client, PAIRS[:1], cache)
    before = len(server.requests)
    judge_pairs(client, [Pair("win", "Q1", "weak now", "weak answer")], cache)
    assert len(server.requests) - before == 2

    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:30])  # crash mid-append
    before = len(server.requests)
    report = judge_pairs(client, [Pair("win", "Q1", "weak now", "weak answer")], cache)
    assert len(server.requests) - before == 1 and report.cached == 1
    *_, torn, appended = cache.read_text().splitlines()
    assert torn == lines[-1][:30] and json.loads(appended)["key"] == json.loads(lines[-1])["key"]


def test_persistent_5xx_gives_up_with_one_line(judge_server):
    server = judge_server(["503"] * 10)
    client, delays = _client(server, max_retries=2, backoff_s=1.0, max_backoff_s=1.5)
    with pytest.raises(
        EvalError,
        match=r"judge endpoint http://127\.0\.0\.1:\d+/v1/chat/completions: HTTP 503 after 3 tries",
    ):
        judge_pairs(client, PAIRS[:1], None, workers=1)
    assert delays == [1.0, 1.5]  # exponential, capped


def test_auth_error_is_not_retried(judge_server):
    server = judge_server(["401"])
    client, _ = _client(server)
    with pytest.raises(EvalError, match="HTTP 401; check the API key variable"):
        client.complete("system", "user")
    assert len(server.requests) == 1


def test_timeouts_exhaust_retries(judge_server):
    server = judge_server(["sleep"] * 3)
    client, _ = _client(server, max_retries=1, timeout_s=0.3)
    with pytest.raises(EvalError, match=r"no answer within 0.3s after 2 tries"):
        client.complete("system", "user")


def test_unreachable_endpoint_fails_fast():
    client = ChatClient("http://127.0.0.1:9", "m", timeout_s=1)
    with pytest.raises(
        EvalError, match=r"judge endpoint http://127.0.0.1:9/chat/completions is unreachable"
    ):
        client.check_reachable()
    with pytest.raises(EvalError, match="not an http"):
        ChatClient("ftp://example", "m").check_reachable()


@pytest.mark.parametrize(
    "reply, scores",
    [
        ("8 7\nExplanation", (8.0, 7.0)),
        ("  9, 6.5  \nwhy", (9.0, 6.5)),
        ("Assistant 1 gets 8", None),
        ("Both are good.\n8 7", None),
        ("", None),
    ],
)
def test_parse_scores_reads_two_numbers_on_the_first_line(reply, scores):
    assert parse_scores(reply) == scores


@pytest.mark.slow  # loads a model and evaluates it
def test_cli_generates_and_judges_against_references(
    judge_server, tiny_lm, tmp_path, monkeypatch, cli
):
    server = judge_server()
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"text": f"Question {i}?", "answer": f"GOOD reference {i}"}) + "\n"
            for i in range(3)
        )
    )
    out = tmp_path / "m" / "tiny.json"
    args = ["eval", "model", str(tiny_lm), "--eval-set", str(questions), "--device", "cpu",
            "--max-new-tokens", "3", "--judge", server.url, "--judge-model", "judge-1",
            "--out", str(out), "--json"]  # fmt: skip
    with monkeypatch.context() as env:  # the key for this run only
        env.setenv("OPENAI_API_KEY", "sk-cli")
        result = cli(*args)
    assert result.code == 0, result.err
    judge = json.loads(out.read_text())["judge"]
    assert (judge["lose"], judge["judged"], judge["ws"], judge["asked"]) == (3, 3, 0.0, 6)
    assert server.requests[0]["auth"] == "Bearer sk-cli"
    assert len((tmp_path / "m" / "tiny.answers.jsonl").read_text().splitlines()) == 3
    assert len((tmp_path / "m" / "tiny.judge-cache.jsonl").read_text().splitlines()) == 6
    details = json.loads((tmp_path / "m" / "tiny.details.json").read_text())
    assert [q["judge"]["score"] for q in details["questions"]] == [-1, -1, -1]

    # against another model's answers (here its own): identical answers tie in both orders
    against = ["--judge-against", str(tmp_path / "m" / "tiny.answers.jsonl")]
    args[args.index(str(out))] = str(tmp_path / "m" / "self.json")
    result = cli(*args, *against)
    assert result.code == 0, result.err
    judge = json.loads((tmp_path / "m" / "self.json").read_text())["judge"]
    assert (judge["tie"], judge["ws"]) == (3, 1.0)


SECRETS = ("sk-userinfo", "sk-query")


def test_a_key_in_the_url_is_sent_but_never_shown_and_the_query_survives(judge_server):
    """Issue 23: `user:key@host` and `?api-key=` keys reach the endpoint (the query string
    after /chat/completions, Azure-style) but no error line shows them."""
    server = judge_server(["401"])
    port = server.server_address[1]
    url = f"http://me:sk-userinfo@127.0.0.1:{port}/openai/d?api-version=1&api-key=sk-query"
    client = ChatClient(url, "judge-1", timeout_s=0.5, max_retries=0)
    with pytest.raises(EvalError) as caught:
        client.complete("system", "user")
    line = str(caught.value)
    assert "HTTP 401" in line and "api-key=***" in line, line
    assert not any(secret in line for secret in SECRETS), line
    assert server.requests[0]["path"] == "/openai/d/chat/completions?api-version=1&api-key=sk-query"
    assert server.requests[0]["auth"] == "Bearer sk-userinfo"
    with pytest.raises(EvalError) as caught:
        ChatClient("http://me:sk-userinfo@127.0.0.1:9/v1?key=sk-query", "m").check_reachable()
    assert "unreachable" in str(caught.value)
    assert not any(secret in str(caught.value) for secret in SECRETS), caught.value


@pytest.mark.slow
def test_a_key_in_the_judge_url_is_in_no_file_written(judge_server, tiny_lm, tmp_path, cli):
    server = judge_server()
    port = server.server_address[1]
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"text": "Question?", "answer": "GOOD reference"}) + "\n")
    out = tmp_path / "m" / "tiny.json"
    url = f"http://me:sk-userinfo@127.0.0.1:{port}/v1?api-key=sk-query"
    result = cli("eval", "model", tiny_lm, "--eval-set", questions, "--device", "cpu",
                 "--max-new-tokens", "2", "--judge", url, "--judge-model", "judge-1",
                 "--out", out, "--json")  # fmt: skip
    assert result.code == 0, result.err
    written = {p.name: p.read_text() for p in out.parent.iterdir()}
    assert set(written) >= {"tiny.json", "tiny.details.json"}
    for name, text in [*written.items(), ("stdout", result.out), ("stderr", result.err)]:
        assert not any(secret in text for secret in SECRETS), name
    details = json.loads(written["tiny.details.json"])
    assert details["judge"]["url"] == f"http://***@127.0.0.1:{port}/v1?api-key=***"
