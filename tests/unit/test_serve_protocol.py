"""Serving honestly (issue 12): every case a row, with the real ``openai`` client (or httpx for
raw bodies) against ``serve`` and the project's fault-injecting fake upstream.

Rows: unsupported fields and malformed bodies are 400s naming the field; the aggregator's
finish reason reaches the client; a failed mixture's 5xx tells the SDK not to retry; a client
that leaves cancels its run; the Host and Content-Type checks; keys masked in what is relayed
or logged; ``GET /v1/models/{id}``; SSE keep-alives; ``/health`` with Redis down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.runtime.cache.redis import RedisCache
from moa_search.serve.app import create_app, running
from moa_search.serve.masking import mask_secrets
from moa_search.testing import FakeOpenAIServer, ModelBehavior

HELLO = [{"role": "user", "content": "What is a mixture of agents?"}]
SECRET = "sk-proj-Zx81QaLmNoPqRsTuVwXy1234"
REDIS = ("127.0.0.1", 6379)


def pool_for(
    srv: FakeOpenAIServer, *aliases: str, retries: int = 1, timeout_s: float = 60.0
) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(
                alias=a,
                base_url=srv.base_url,
                model=a,
                max_concurrency=8,
                timeout_s=timeout_s,
                max_retries=retries,
            )
            for a in aliases
        )
    )


def mixture(*proposers: str, agg: str = "agg", quorum: int | None = None) -> MixtureConfig:
    extra: dict[str, Any] = {} if quorum is None else {"quorum": quorum}
    return MixtureConfig(
        layers=(tuple(AgentSpec(model=p) for p in proposers),),
        aggregator=AgentSpec(model=agg),
        **extra,
    )


def wait_until(check: Callable[[], bool], within_s: float = 10.0) -> bool:
    """Poll ``check`` (a condition, not a delay) until it holds or ``within_s`` pass."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def url(fake: FakeOpenAIServer) -> Iterator[str]:
    app = create_app({"moa": (mixture("p1"), pool_for(fake, "p1", "agg"))})
    with running(app) as base:
        yield base


# ------------------------------------------------------------------ refused before any call

TEXT_PART = {"type": "text", "text": "describe"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
NESTED = b'{"model": "moa", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
BIG_INT = b'{"model": "moa", "messages": [], "seed": ' + b"7" * 5_000 + b"}"
SURROGATE = b'{"model": "moa", "messages": [{"role": "user", "content": "a \\ud800 b"}]}'


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "moa", "messages": HELLO, **fields}


# (id, httpx request kwargs, status, param, words in the message); a dict body goes as JSON
REFUSED: list[tuple[str, dict[str, Any], int, str | None, str]] = [
    ("tools", {"json": _body(tools=[TOOL])}, 400, "tools", "cannot call tools"),
    ("tool_choice", {"json": _body(tool_choice="required")}, 400, "tool_choice", "tools"),
    ("functions", {"json": _body(functions=[TOOL["function"]])}, 400, "functions", "functions"),
    ("function_call", {"json": _body(function_call={"name": "f"})}, 400, "function_call", "tools"),
    (
        "response_format",
        {"json": _body(response_format={"type": "json_object"})},
        400,
        "response_format",
        "plain text",
    ),
    ("logprobs", {"json": _body(logprobs=True)}, 400, "logprobs", "log-probabilities"),
    ("top_logprobs", {"json": _body(top_logprobs=3)}, 400, "top_logprobs", "log-probabilities"),
    ("n", {"json": _body(n=2)}, 400, "n", "n=1 only"),
    (
        "image part",
        {
            "json": _body(
                messages=[
                    {
                        "role": "user",
                        "content": [TEXT_PART, {"type": "image_url", "image_url": {"url": "x"}}],
                    }
                ]
            )
        },
        400,
        "messages[0].content[1]",
        "'image_url' parts are not supported",
    ),
    (
        "audio part",
        {
            "json": _body(
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
            )
        },
        400,
        "messages[0].content[0]",
        "'input_audio' parts",
    ),
    (
        "tool result",
        {"json": _body(messages=[*HELLO, {"role": "tool", "tool_call_id": "c1", "content": "4"}])},
        400,
        "messages[1].role",
        "tools are not supported",
    ),
    (
        "tool-call history",
        {
            "json": _body(
                messages=[*HELLO, {"role": "assistant", "content": None, "tool_calls": [CALL]}]
            )
        },
        400,
        "messages[1].tool_calls",
        "tools are not supported",
    ),
    ("5,000-digit integer", {"content": BIG_INT}, 400, None, "longer than 100 digits"),
    ("100k-deep nesting", {"content": NESTED}, 400, None, "nested deeper than 64"),
    (
        "role as a list",
        {"json": _body(messages=[{"role": ["user"], "content": "hi"}])},
        400,
        "messages[0].role",
        "'system', 'user' or 'assistant'",
    ),
    (
        "non-string text part",
        {"json": _body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}])},
        400,
        "messages[0].content",
        "must be a string",
    ),
    ("lone surrogate", {"content": SURROGATE}, 400, "messages[0].content", "lone UTF-16"),
    (
        "text/plain",
        {"content": json.dumps(_body()), "headers": {"content-type": "text/plain"}},
        415,
        None,
        "application/json",
    ),
    (
        "no content type",
        {"content": json.dumps(_body()).encode(), "headers": {}},
        415,
        None,
        "application/json",
    ),
    (
        "forged Host",
        {"json": _body(), "headers": {"host": "evil.example"}},
        421,
        None,
        "does not name this server",
    ),
]


@pytest.mark.parametrize(
    ("request_kw", "status", "param", "words"),
    [row[1:] for row in REFUSED],
    ids=[row[0] for row in REFUSED],
)
def test_refused_requests_name_the_problem_and_spend_nothing(
    fake: FakeOpenAIServer,
    url: str,
    request_kw: dict[str, Any],
    status: int,
    param: str | None,
    words: str,
) -> None:
    before = fake.count()
    kw = dict(request_kw)
    if "content" in kw:  # a raw body is sent as JSON unless the row says otherwise
        kw.setdefault("headers", {"content-type": "application/json"})
    response = httpx2.post(f"{url}/chat/completions", timeout=30, **kw)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"]
    assert fake.count() == before  # nothing went upstream


def test_the_official_client_gets_the_400_and_developer_is_system(
    fake: FakeOpenAIServer, url: str
) -> None:
    with openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30) as c:
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(
                model="moa",
                messages=HELLO,
                tools=[TOOL],
                tool_choice="required",
            )
        assert info.value.body["param"] == "tools"  # type: ignore[index]
        assert info.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
        fake.reset_log()
        reply = c.chat.completions.create(
            model="moa",
            messages=[{"role": "developer", "content": "Answer tersely."}, *HELLO],
            response_format={"type": "text"},
            logprobs=False,
        )
    assert reply.choices[0].message.content
    proposer = next(r for r in fake.requests if r.model == "p1")
    assert proposer.messages[0] == {"role": "system", "content": "Answer tersely."}


def test_models_by_id(url: str) -> None:
    with openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30) as c:
        assert c.models.retrieve("moa").id == "moa"
        with pytest.raises(openai.NotFoundError) as info:
            c.models.retrieve("gpt-4o")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


# ------------------------------------------------------------------ what comes back


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_finish_reason_is_the_aggregators(fake: FakeOpenAIServer, stream: bool) -> None:
    # "length": the aggregator was cut by its max_tokens; the fake halves the answer
    fake.set_behavior("cut", ModelBehavior(faults=("length",), answer="one two three four"))
    app = create_app({"moa": (mixture("p1", agg="cut"), pool_for(fake, "p1", "cut"))})
    with (
        running(app) as base,
        openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=30) as c,
    ):
        if stream:
            chunks = list(c.chat.completions.create(model="moa", messages=HELLO, stream=True))
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
            assert finish[-1] == "length" and not any(finish[:-1])
        else:
            reply = c.chat.completions.create(model="moa", messages=HELLO)
            text = reply.choices[0].message.content or ""
            assert reply.choices[0].finish_reason == "length"
        assert text == "one two"
        # an aggregator that stopped by itself says "stop"
        again = c.chat.completions.create(model="moa", messages=HELLO)
        assert again.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_failed_mixture_is_not_retried_by_the_sdk(fake: FakeOpenAIServer, stream: bool) -> None:
    fake.set_behavior("dead", ModelBehavior(fault_rate=1.0, fault_kinds=("500",)))
    fake.reset_log()
    app = create_app(
        {"moa": (mixture("dead", "ok", agg="ok", quorum=2), pool_for(fake, "dead", "ok"))}
    )
    with running(app) as base:
        # the SDK's default retries (2): a 502 without x-should-retry would run it three times
        with (
            openai.OpenAI(base_url=base, api_key="x", timeout=30) as c,
            pytest.raises(openai.InternalServerError) as info,
        ):
            c.chat.completions.create(model="moa", messages=HELLO, stream=stream)
        assert info.value.status_code == 502
        assert info.value.response.headers["x-should-retry"] == "false"
    # one run: "dead" tried twice (max_retries 1), "ok" once; no aggregator after the quorum
    assert fake.count("dead") == 2 and fake.count("ok") == 1


def _leaky(request: Any) -> str:
    raise RuntimeError(f"Incorrect API key provided: {SECRET}. Authorization: Bearer {SECRET}")


def test_keys_are_masked_in_what_is_relayed_and_logged(
    fake: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.set_behavior("leaky", ModelBehavior(answer=_leaky))
    pool = pool_for(fake, "leaky", "p1", "agg", retries=0)
    app = create_app(
        {
            "survives": (mixture("leaky", "p1", quorum=1), pool),
            "fails": (mixture("p1", agg="leaky"), pool),
        }
    )
    access: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: access.append(record.getMessage())  # type: ignore[method-assign]
    caplog.set_level(logging.INFO)
    with running(app, log_level="info") as base:
        logging.getLogger("uvicorn.access").addHandler(handler)
        try:
            with openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=30) as c:
                reply = c.chat.completions.create(
                    model="survives", messages=HELLO, extra_headers={"X-MOA-Trace": "1"}
                )
                with pytest.raises(openai.InternalServerError) as info:
                    c.chat.completions.create(model="fails", messages=HELLO)
            listed = httpx2.get(f"{base}/models?api_key={SECRET}&token=hunter2hunter2")
            assert listed.status_code == 200
        finally:
            logging.getLogger("uvicorn.access").removeHandler(handler)
    trace = json.dumps(reply.model_extra["moa_trace"])
    assert "leaky" in trace and "sk-proj-***" in trace and SECRET not in trace
    message = str(info.value)
    assert "Incorrect API key provided: sk-proj-***" in message and SECRET not in message
    assert any("/models?api_key=***&token=***" in line for line in access)
    assert SECRET not in "\n".join(access) and "hunter2" not in "\n".join(access)
    # the runtime's warning about the dropped proposer and the server's about the 502 included
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("moa_search")]
    assert any("leaky" in line and "sk-proj-***" in line for line in logged)
    assert not any(SECRET in line for line in logged)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"Incorrect API key provided: {SECRET}.", "Incorrect API key provided: sk-proj-***."),
        ("gsk_ABCdef1234567890ghijKLMN is wrong", "gsk_*** is wrong"),
        ("Authorization: Bearer abc.DEF-123456", "Authorization: Bearer ***"),
        ("GET /v1/models?key=abc&x=1", "GET /v1/models?key=***&x=1"),
        ("id 0123456789abcdef0123456789abcdef", "id ***"),
        ("aGVsbG8gd29ybGQgdGhpcyBpcyBhIGxvbmcgc2VjcmV0MTIz==", "***"),
        ("meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo", None),
        ("HTTP 500 after 2 attempt(s): The server had an error (fake 500).", None),
    ],
)
def test_mask_secrets(text: str, masked: str | None) -> None:
    assert mask_secrets(text) == (text if masked is None else masked)


# ------------------------------------------------------------------ clients that leave


def _send_raw(base: str, body: dict[str, Any]) -> socket.socket:
    host, port = base.removeprefix("http://").removesuffix("/v1").split(":")
    sock = socket.create_connection((host, int(port)))
    payload = json.dumps(body).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: "
        + f"{host}:{port}".encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )
    return sock


LEAVING = [
    # (id, the model that hangs, stream, keep-alive interval, wait for a keep-alive first)
    ("plain, aggregator hangs", "slow", False, 60.0, False),
    ("plain, proposer hangs", "p-slow", False, 60.0, False),
    ("streamed, before the headers", "slow", True, 60.0, False),
    ("streamed, after keep-alives", "slow", True, 0.05, True),
]


@pytest.mark.parametrize(
    ("hung", "stream", "keepalive_s", "after_keepalive"),
    [row[1:] for row in LEAVING],
    ids=[row[0] for row in LEAVING],
)
def test_a_client_that_leaves_cancels_its_run(
    fake: FakeOpenAIServer, hung: str, stream: bool, keepalive_s: float, after_keepalive: bool
) -> None:
    # the upstream would hang for 30 s; the run must stop as soon as the client is gone
    for model in ("slow", "p-slow"):
        fake.set_behavior(model, ModelBehavior(fault_rate=1.0, fault_kinds=("hang",), hang_s=30))
    proposer = "p-slow" if hung == "p-slow" else "p1"
    pool = pool_for(fake, proposer, "slow", "agg")
    agg = "slow" if hung == "slow" else "agg"
    app = create_app({"moa": (mixture(proposer, agg=agg), pool)}, keepalive_s=keepalive_s)
    service = app.state.moa
    calls_before, agg_before = fake.count(hung), fake.count("agg")
    with running(app) as base:
        sock = _send_raw(base, _body(stream=stream))
        try:
            assert wait_until(lambda: fake.in_flight(hung) == 1)
            if after_keepalive:
                received = b""
                while b": keepalive" not in received:
                    received += sock.recv(4096)
                assert b" 200 OK" in received.split(b"\r\n")[0]
        finally:
            sock.close()
        assert wait_until(lambda: fake.in_flight(hung) == 0 and service.cancelled_runs == 1)
    assert fake.count(hung) == calls_before + 1  # cancelled, not retried
    assert fake.count("agg") == agg_before  # the aggregator never ran


# ------------------------------------------------------------------ keep-alives, Host, health


def test_keepalives_while_the_layers_run_then_the_answer(fake: FakeOpenAIServer) -> None:
    fake.set_behavior("p-late", ModelBehavior(latency_s=0.5))
    fake.set_behavior(
        "agg-dead", ModelBehavior(latency_s=0.5, fault_rate=1.0, fault_kinds=("500",))
    )
    pool = pool_for(fake, "p-late", "agg", "agg-dead", retries=0)
    app = create_app(
        {
            "moa": (mixture("p-late"), pool),
            "dies": (mixture("p-late", agg="agg-dead"), pool),
        },
        keepalive_s=0.05,
    )
    with running(app) as base:
        raw = httpx2.post(f"{base}/chat/completions", json=_body(stream=True), timeout=30)
        assert raw.status_code == 200
        blocks = raw.text.split("\n\n")
        keepalives = [b for b in blocks if b == ": keepalive"]
        data = [b for b in blocks if b.startswith("data: ")]
        assert keepalives and data[-1] == "data: [DONE]"
        # the keep-alives came before the first text (the layers were running)
        first_text = next(i for i, b in enumerate(blocks) if re.search(r'"content":"[^"]', b))
        assert blocks.index(": keepalive") < first_text
        with openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=30) as c:
            chunks = list(c.chat.completions.create(model="moa", messages=HELLO, stream=True))
            assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            # the stream had started when the aggregator failed: an SSE error event, no [DONE]
            failed = httpx2.post(
                f"{base}/chat/completions", json=_body(model="dies", stream=True), timeout=30
            )
            events = [b for b in failed.text.split("\n\n") if b.startswith("data: ")]
            assert failed.status_code == 200 and ": keepalive" in failed.text
            assert (
                json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "upstream_error"
            )


def test_host_check_only_without_a_key_and_a_warning_at_startup(
    fake: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    pool = pool_for(fake, "p1", "agg")
    caplog.set_level(logging.WARNING)
    open_app = create_app({"moa": (mixture("p1"), pool)}, api_key="", allowed_hosts=["moa.lan"])
    keyed = create_app({"moa": (mixture("p1"), pool)}, api_key="k3y-for-tests")
    with running(open_app) as base:
        port = base.rsplit(":", 1)[1].removesuffix("/v1")
        for host, status in [
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            ("moa.lan", 200),
            (f"evil.example:{port}", 421),
            (f"127.0.0.1:{int(port) + 1}", 421),
        ]:
            got = httpx2.get(f"{base}/models", headers={"host": host})
            assert got.status_code == status, host
    assert any("without an API key" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with running(keyed) as base:
        got = httpx2.get(
            f"{base}/models",
            headers={"host": "proxy.example", "authorization": "Bearer k3y-for-tests"},
        )
        assert got.status_code == 200  # a key guards the server: any name may reach it
    assert not any("without an API key" in r.getMessage() for r in caplog.records)


class _Forwarder:
    """A TCP relay to Redis that can be cut: Redis "going away" without touching the real one."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_health_is_503_when_the_redis_cache_is_down(fake: FakeOpenAIServer) -> None:
    relay = _Forwarder(REDIS)
    cache = RedisCache(f"redis://127.0.0.1:{relay.port}/9", prefix="moa-search:test-health:")
    try:
        app = create_app({"moa": (mixture("p1"), pool_for(fake, "p1", "agg"))}, cache=cache)
        with running(app) as base:
            health = base.removesuffix("/v1") + "/health"
            assert httpx2.get(health).json() == {"status": "ok"}
            relay.cut()
            down = httpx2.get(health, timeout=30)
            assert down.status_code == 503 and down.json()["status"] == "unavailable"
            assert "Redis" in down.json()["reason"]
    finally:
        relay.cut()
        cache.close()
