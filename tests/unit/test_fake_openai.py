"""The fake OpenAI server, driven by the real ``openai`` client (max_retries=0)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from moa_search.testing import FakeOpenAIServer, ModelBehavior, RecordedRequest

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
]


def _client(server: FakeOpenAIServer, **kwargs: object) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="x", max_retries=0, **kwargs)  # type: ignore[arg-type]


def _aclient(server: FakeOpenAIServer, **kwargs: object) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, **kwargs)  # type: ignore[arg-type]


def _post_raw(url: str, body: dict[str, object]) -> bytes:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.read()


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer({"m1": ModelBehavior(), "m2": ModelBehavior(answer="fixed")}) as srv:
        yield srv


def test_completion_with_usage(server: FakeOpenAIServer) -> None:
    with _client(server) as client:
        resp = client.chat.completions.create(
            model="m1", messages=MESSAGES, seed=7, temperature=0.5, max_tokens=20
        )
    assert resp.object == "chat.completion"
    assert resp.model == "m1"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    content = resp.choices[0].message.content
    assert content == "m1 answer (seed=7): What is the capital of France?"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 3 + 6
    assert resp.usage.completion_tokens == len(content.split())
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    [rec] = server.requests
    assert isinstance(rec, RecordedRequest)
    assert (rec.model, rec.seed, rec.temperature, rec.max_tokens) == ("m1", 7, 0.5, 20)
    assert rec.stream is False and rec.fault == "ok" and rec.messages == MESSAGES
    assert rec.body["model"] == "m1"


def test_stream_with_usage_and_done(server: FakeOpenAIServer) -> None:
    async def run() -> tuple[list[object], list[bytes]]:
        async with _aclient(server) as client:
            stream = await client.chat.completions.create(
                model="m1",
                messages=MESSAGES,
                seed=1,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            raw = await asyncio.to_thread(
                _post_raw,
                f"{server.base_url}/chat/completions",
                {"model": "m2", "messages": MESSAGES, "stream": True},
            )
            lines = [line for line in raw.split(b"\n\n") if line]
        return chunks, lines

    chunks, lines = asyncio.run(run())
    assert chunks[0].choices[0].delta.role == "assistant"  # type: ignore[attr-defined]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # type: ignore[attr-defined]
    assert text == "m1 answer (seed=1): What is the capital of France?"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]  # type: ignore[attr-defined]
    assert len(content_chunks) >= 3
    assert chunks[-2].choices[0].finish_reason == "stop"  # type: ignore[attr-defined]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9  # type: ignore[attr-defined]
    assert lines[-1] == b"data: [DONE]"
    assert json.loads(lines[-2][len(b"data: ") :])["choices"][0]["finish_reason"] == "stop"
    assert server.count() == 2 and server.count("m1") == 1


def test_distinct_seeds_give_distinct_answers(server: FakeOpenAIServer) -> None:
    with _client(server) as client:
        answers = {
            client.chat.completions.create(model="m1", messages=MESSAGES, seed=s)
            .choices[0]
            .message.content
            for s in (1, 2, 3)
        }
        again = client.chat.completions.create(model="m1", messages=MESSAGES, seed=1)
    assert len(answers) == 3
    assert again.choices[0].message.content in answers  # deterministic


def test_models_health_and_404(server: FakeOpenAIServer) -> None:
    with _client(server) as client:
        assert sorted(m.id for m in client.models.list()) == ["m1", "m2"]
    root = server.base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/health", timeout=5) as resp:
        assert json.loads(resp.read()) == {"status": "ok"}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.base_url}/nope", timeout=5)
    assert info.value.code == 404
    assert set(json.loads(info.value.read())["error"]) >= {"message", "type", "code"}
    with pytest.raises(urllib.error.HTTPError) as info:
        _post_raw(f"{server.base_url}/chat/completions", {"messages": []})  # no model
    assert info.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.base_url}/chat/completions", timeout=5)  # GET
    assert info.value.code == 405
    assert server.count() == 0  # only valid chat requests are recorded


def test_keep_alive_reuses_one_connection(server: FakeOpenAIServer) -> None:
    with _client(server) as client:
        for _ in range(3):
            client.chat.completions.create(model="m1", messages=MESSAGES)
        assert server.connections_accepted == 1
        for _ in client.chat.completions.create(model="m1", messages=MESSAGES, stream=True):
            pass
        client.chat.completions.create(model="m1", messages=MESSAGES)
    # The openai client closes a stream's response on [DONE] before reading the chunked
    # terminator, so httpcore drops that connection: one more connection, not a server bug.
    assert server.connections_accepted <= 2
    # A client that reads the stream to its end keeps the connection (chunked keep-alive).
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"model": "m1", "messages": MESSAGES, "stream": True})
    before = server.connections_accepted
    for _ in range(2):
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
        assert resp.read().endswith(b"data: [DONE]\n\n")
    conn.close()
    assert server.connections_accepted == before + 1
    assert server.count() == 7


def test_latency_is_honoured_and_requests_are_concurrent() -> None:
    behaviors = {"slow": ModelBehavior(latency_s=0.3)}
    with FakeOpenAIServer(behaviors) as server:
        # the server holds the answer for its latency: a client that waits less times out
        with _client(server, timeout=0.1) as impatient, pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(model="slow", messages=MESSAGES)

        async def run() -> None:
            async with _aclient(server) as client:
                await client.chat.completions.create(model="slow", messages=MESSAGES)
                assert server.max_in_flight == 1
                await asyncio.gather(
                    *(
                        client.chat.completions.create(model="slow", messages=MESSAGES)
                        for _ in range(2)
                    )
                )

        server.reset_log()
        asyncio.run(run())
        # the pair was handled side by side (the server's own concurrency counter)
        assert server.max_in_flight == 2 and server.count() == 3


def test_stream_chunk_delay() -> None:
    behaviors = {"s": ModelBehavior(stream_chunk_delay_s=0.5, answer="one two three")}
    with FakeOpenAIServer(behaviors) as server:
        with _client(server) as client:
            stream = client.chat.completions.create(model="s", messages=MESSAGES, stream=True)
            chunks = list(stream)
        # role, three words, stop
        assert len(chunks) == 5
        # the chunks come the delay apart: a client reading with a shorter timeout gets the
        # first chunk, then times out waiting for the second
        with _client(server, timeout=0.1) as impatient:
            stream = impatient.chat.completions.create(model="s", messages=MESSAGES, stream=True)
            got = []
            with pytest.raises(openai.APITimeoutError):
                for chunk in stream:
                    got.append(chunk)
        assert len(got) == 1


def test_429_carries_retry_after() -> None:
    behaviors = {"m": ModelBehavior(faults=("429",), retry_after_s=1.5)}
    with FakeOpenAIServer(behaviors) as server, _client(server) as client:
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert info.value.status_code == 429
        assert info.value.response.headers["retry-after"] == "1.5"
        assert info.value.response.headers["retry-after-ms"] == "1500"
        assert info.value.code == "rate_limit_exceeded"
        # the same keep-alive connection keeps working afterwards
        client.chat.completions.create(model="m", messages=MESSAGES)


def test_500_and_503_are_internal_server_errors() -> None:
    behaviors = {"m": ModelBehavior(faults=("500", "503"))}
    with FakeOpenAIServer(behaviors) as server, _client(server) as client:
        for status in (500, 503):
            with pytest.raises(openai.InternalServerError) as info:
                client.chat.completions.create(model="m", messages=MESSAGES)
            assert info.value.status_code == status


def test_hang_triggers_client_timeout() -> None:
    behaviors = {"m": ModelBehavior(faults=("hang",), hang_s=5.0)}
    with FakeOpenAIServer(behaviors) as server, _client(server, timeout=0.3) as client:
        # without the timeout the hung request would be answered after 5 s, with no error
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert server.requests[0].fault == "hang"


def test_reset_is_a_connection_error() -> None:
    behaviors = {"m": ModelBehavior(faults=("reset", "reset"))}
    with FakeOpenAIServer(behaviors) as server, _client(server) as client:
        with pytest.raises(openai.APIConnectionError) as info:
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert not isinstance(info.value, openai.APITimeoutError)
        # the transport saw a TCP RST (httpx2.ReadError: connection reset by peer)
        assert type(info.value.__cause__).__name__ == "ReadError"

        async def run() -> None:
            async with _aclient(server) as aclient:
                await aclient.chat.completions.create(model="m", messages=MESSAGES)

        with pytest.raises(openai.APIConnectionError):
            asyncio.run(run())


def test_malformed_body_raises_a_bare_json_decode_error() -> None:
    # The openai client does not wrap this one: json.JSONDecodeError (a ValueError), not an
    # openai.APIError, both from create() and while iterating a stream.
    behaviors = {"m": ModelBehavior(faults=("malformed", "malformed", "ok"))}
    with FakeOpenAIServer(behaviors) as server, _client(server) as client:
        with pytest.raises(json.JSONDecodeError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(json.JSONDecodeError):
            list(stream)
        # the connection stays usable
        assert client.chat.completions.create(model="m", messages=MESSAGES).choices


def test_truncate_is_a_connection_error() -> None:
    behaviors = {"m": ModelBehavior(faults=("truncate", "truncate"), answer="a b c d e f")}
    with FakeOpenAIServer(behaviors) as server, _client(server) as client:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        received = []
        with pytest.raises(openai.APIConnectionError) as info:
            for chunk in stream:
                received.append(chunk)
        # incomplete chunked read, raised mid-iteration after some chunks arrived
        assert type(info.value.__cause__).__name__ == "RemoteProtocolError"
        assert len(received) == 4  # role + 3 of the 6 words
        assert all(c.choices[0].finish_reason is None for c in received)
        with pytest.raises(openai.APIConnectionError) as info:
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert type(info.value.__cause__).__name__ == "RemoteProtocolError"


def test_fault_sequence_is_consumed_in_order() -> None:
    behaviors = {
        "a": ModelBehavior(faults=("429", "ok", "500")),
        "b": ModelBehavior(faults=("500",)),
    }
    with FakeOpenAIServer(behaviors) as server, _client(server) as client:
        outcomes = []
        for model in ("a", "b", "a", "a", "a", "b"):
            try:
                client.chat.completions.create(model=model, messages=MESSAGES)
                outcomes.append("ok")
            except openai.APIStatusError as exc:
                outcomes.append(str(exc.status_code))
        assert outcomes == ["429", "500", "ok", "500", "ok", "ok"]
        assert [r.fault for r in server.requests] == outcomes
        server.reset_log(reset_faults=True)
        assert server.count() == 0
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="a", messages=MESSAGES)


def test_fault_rate_is_reproducible() -> None:
    behavior = ModelBehavior(fault_rate=0.5, fault_kinds=("429", "500"), seed=42)

    def faults() -> list[str]:
        with FakeOpenAIServer({"m": behavior}) as server, _client(server) as client:
            for _ in range(16):
                with contextlib.suppress(openai.APIStatusError):
                    client.chat.completions.create(model="m", messages=MESSAGES)
            return [r.fault for r in server.requests]

    first = faults()
    assert first == faults()
    assert {"ok", "429", "500"} <= set(first)


def test_api_key_is_required_when_set() -> None:
    with FakeOpenAIServer(require_api_key="secret") as server:
        with _client(server) as client, pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="any", messages=MESSAGES)
        good = OpenAI(base_url=server.base_url, api_key="secret", max_retries=0)
        with good:
            resp = good.chat.completions.create(model="any", messages=MESSAGES)
        assert resp.choices[0].message.content.startswith("any answer")  # type: ignore[union-attr]
        assert server.count() == 1  # the rejected request is not recorded


def test_callable_answer_and_astart() -> None:
    def answer(req: RecordedRequest) -> str:
        return f"echo {len(req.messages)}"

    async def run() -> str | None:
        behaviors = {"e": ModelBehavior(answer=answer)}
        async with FakeOpenAIServer(behaviors) as server, _aclient(server) as client:
            resp = await client.chat.completions.create(model="e", messages=MESSAGES)
        return resp.choices[0].message.content

    assert asyncio.run(run()) == "echo 2"


def test_invalid_behavior_is_rejected() -> None:
    with pytest.raises(ValueError):
        ModelBehavior(faults=("boom",))
    with pytest.raises(ValueError):
        ModelBehavior(fault_rate=1.5)


def test_cli_serves_until_terminated(tmp_path: Path) -> None:
    spec = tmp_path / "behaviors.json"
    spec.write_text(json.dumps({"cli-model": {"answer": "from the cli", "faults": ["ok"]}}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moa_search.testing.fake_openai", "--behaviors", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        base_url = line.removeprefix("listening on ")
        with OpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
            resp = client.chat.completions.create(model="cli-model", messages=MESSAGES)
            assert resp.choices[0].message.content == "from the cli"
            assert [m.id for m in client.models.list()] == ["cli-model"]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "RuntimeWarning" not in stderr
