"""The OpenAI-compatible server, driven by the real ``openai`` client over loopback.

Upstream is the project's fault-injecting fake server (fast), and once the real local llama.cpp
pool (slow; two requests)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from pydantic import ValidationError

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.runtime.mixture import Mixture
from moa_search.serve.app import API_KEY_ENV, create_app, running
from moa_search.serve.wire import ChatCompletionRequest, invalid_request
from moa_search.testing import FakeOpenAIServer, ModelBehavior

ROOT = Path(__file__).resolve().parents[2]
TRACE = {"X-MOA-Trace": "1"}
HELLO = [{"role": "user", "content": "What is a mixture of agents?"}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def pool_for(
    srv: FakeOpenAIServer,
    *aliases: str,
    retries: int = 2,
    timeout_s: float = 5.0,
    concurrency: int = 8,
) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(
                alias=a,
                base_url=srv.base_url,
                model=a,
                max_concurrency=concurrency,
                timeout_s=timeout_s,
                max_retries=retries,
            )
            for a in aliases
        )
    )


def two_proposers(name: str = "moa") -> MixtureConfig:
    return MixtureConfig(
        name=name,
        layers=((AgentSpec(model="p1", samples=2), AgentSpec(model="p2")),),
        aggregator=AgentSpec(model="agg"),
    )


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(url: str, key: str = "unused", **kw: Any) -> openai.OpenAI:
    """An openai client without retries, closed when the test ends."""
    kw.setdefault("timeout", 30)
    made = openai.OpenAI(base_url=url, api_key=key, max_retries=0, **kw)
    _clients.append(made)
    return made


def sse_data(raw: str) -> list[str]:
    return [line[len("data: ") :] for line in raw.split("\n\n") if line.startswith("data: ")]


def test_answers_plain_and_streamed_with_usage_summed_over_the_trace(
    fake: FakeOpenAIServer,
) -> None:
    fake.set_behavior("agg", ModelBehavior(answer="a fused answer in six words"))
    app = create_app({"moa": (two_proposers(), pool_for(fake, "p1", "p2", "agg"))})
    with running(app) as url:
        c = client(url)
        resp = c.chat.completions.create(model="moa", messages=HELLO, extra_headers=TRACE)
        assert resp.object == "chat.completion" and resp.model == "moa"
        assert resp.choices[0].message.content == "a fused answer in six words"
        assert resp.choices[0].finish_reason == "stop"
        trace = resp.model_extra["moa_trace"]
        calls = trace["calls"]
        assert [(x["role"], x["model"]) for x in calls] == [
            ("proposer", "p1"),
            ("proposer", "p1"),
            ("proposer", "p2"),
            ("aggregator", "agg"),
        ]
        assert resp.usage is not None
        assert resp.usage.prompt_tokens == sum(x["tokens_in"] for x in calls) > 0
        assert resp.usage.completion_tokens == sum(x["tokens_out"] for x in calls) > 0
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
        # the fake counts words: the aggregator's share of completion_tokens is its 6 words
        assert calls[-1]["tokens_out"] == 6

        chunks = list(
            c.chat.completions.create(
                model="moa",
                messages=[{"role": "user", "content": "Stream it"}],
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=TRACE,
            )
        )
        assert chunks[0].choices[0].delta.role == "assistant"
        deltas = [ch.choices[0].delta.content for ch in chunks[1:] if ch.choices]
        text = "".join(d for d in deltas if d)
        assert text == "a fused answer in six words"
        assert sum(1 for d in deltas if d) == 6  # forwarded piece by piece
        final = next(ch for ch in chunks if ch.choices and ch.choices[0].finish_reason)
        assert final.choices[0].finish_reason == "stop"
        usage_chunk = chunks[-1]
        assert usage_chunk.choices == [] and usage_chunk.usage is not None
        stream_calls = final.model_extra["moa_trace"]["calls"]
        assert usage_chunk.usage.prompt_tokens == sum(x["tokens_in"] for x in stream_calls)
        assert usage_chunk.usage.completion_tokens == sum(x["tokens_out"] for x in stream_calls)

        # the wire format: SSE events, role first, [DONE] last; no trace without the header
        raw = httpx2.post(
            f"{url}/chat/completions",
            json={"model": "moa", "messages": HELLO, "stream": True},
            timeout=30,
        )
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = sse_data(raw.text)
        assert events[-1] == "[DONE]"
        first = json.loads(events[0])
        assert first["object"] == "chat.completion.chunk"
        assert first["choices"][0]["delta"]["role"] == "assistant"
        assert all("moa_trace" not in e and "usage" not in json.loads(e) for e in events[:-1])

        models = c.models.list()
        assert [m.id for m in models.data] == ["moa"]
        assert httpx2.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


def test_api_key_from_the_environment(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "s3cret-key-value")
    caplog.set_level(logging.DEBUG)
    app = create_app({"moa": (two_proposers(), pool_for(fake, "p1", "p2", "agg"))})
    with running(app) as url:
        with pytest.raises(openai.AuthenticationError) as info:
            client(url, "wrong").chat.completions.create(model="moa", messages=HELLO)
        assert info.value.status_code == 401
        no_key = httpx2.get(f"{url}/models")
        assert no_key.status_code == 401
        error = no_key.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "invalid_api_key" and API_KEY_ENV in error["message"]
        assert httpx2.get(f"{url}/nowhere").status_code == 401
        assert fake.count() == 0  # nothing went upstream
        # /health needs no key; the right key works
        assert httpx2.get(url.removesuffix("/v1") + "/health").status_code == 200
        ok = client(url, "s3cret-key-value").chat.completions.create(model="moa", messages=HELLO)
        assert ok.choices[0].message.content
    assert "s3cret-key-value" not in caplog.text


def test_unknown_model_bad_requests_and_unknown_paths(fake: FakeOpenAIServer) -> None:
    app = create_app({"moa": (two_proposers(), pool_for(fake, "p1", "p2", "agg"))})
    with running(app) as url:
        c = client(url)
        with pytest.raises(openai.NotFoundError) as info:
            c.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert "gpt-4o" in str(info.value) and "moa" in str(info.value)
        assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="moa", messages=[])
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(
                model="moa",
                messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[list-item]
            )
        assert "role" in str(info.value)
        bad_json = httpx2.post(
            f"{url}/chat/completions",
            content=b'{"model": "moa", "messages": [',
            headers={"content-type": "application/json"},
        )
        assert bad_json.status_code == 400
        assert "not valid JSON" in bad_json.json()["error"]["message"]
        no_model = httpx2.post(f"{url}/chat/completions", json={"messages": HELLO})
        assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
        nowhere = httpx2.get(f"{url}/nowhere")
        assert nowhere.status_code == 404 and "error" in nowhere.json()
        wrong_method = httpx2.get(f"{url}/chat/completions")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert fake.count() == 0


@pytest.mark.parametrize(
    ("body", "param", "code", "words"),
    [
        ({"messages": HELLO}, "model", "missing_required_parameter", "name of a served mixture"),
        ({"model": None, "messages": HELLO}, "model", "missing_required_parameter", "required"),
        ({"model": "", "messages": HELLO}, "model", "invalid_value", "at least 1 character"),
        ({"model": 3, "messages": HELLO}, "model", "invalid_type", "valid string"),
        ({"model": "moa", "messages": []}, "messages", "invalid_value", "at least 1 item"),
        ({"model": "moa", "messages": "hi"}, "messages", "invalid_type", "valid list"),
        ({"model": "moa", "messages": [5]}, "messages[0]", "invalid_type", "an object"),
        (
            {"model": "moa", "messages": [*HELLO, {"role": "wizard", "content": "hi"}]},
            "messages[1].role",
            "invalid_value",
            "'system', 'user' or 'assistant', not 'wizard'",
        ),
        (
            {"model": "moa", "messages": [{"role": "user"}]},
            "messages[0].content",
            "missing_required_parameter",
            "required",
        ),
        (
            {"model": "moa", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_type",
            "valid string",
        ),
        (
            {"model": "moa", "messages": [{"role": "user", "content": [{"type": "text"}, 1]}]},
            None,
            None,
            "",
        ),
        (
            {"model": "moa", "messages": HELLO, "stream": "true"},
            "stream",
            "invalid_type",
            "boolean",
        ),
        (
            {"model": "moa", "messages": HELLO, "stream_options": 3},
            "stream_options",
            None,
            "object",
        ),
        ({"model": "moa", "messages": HELLO, "n": 2}, "n", "invalid_value", "n=1 only"),
        ({"model": 3, "messages": []}, "model", "invalid_type", "1 more problem"),
    ],
)
def test_a_bad_request_names_the_field_in_openai_error_shape(
    body: dict[str, Any], param: str | None, code: str | None, words: str
) -> None:
    if param is None:  # accepted: text parts are joined, other parts ignored
        assert ChatCompletionRequest.model_validate(body).openai_messages() == [
            {"role": "user", "content": ""}
        ]
        return
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    error = invalid_request(info.value)
    assert error.status == 400
    detail = error.body()["error"]
    assert set(detail) == {"message", "type", "param", "code"}
    assert detail["type"] == "invalid_request_error" and detail["param"] == param
    if code is not None:
        assert detail["code"] == code
    assert f"'{param}'" in detail["message"] and words in detail["message"]


def test_what_a_request_may_leave_out_or_add() -> None:
    parts = [{"type": "text", "text": "a "}, {"type": "image_url", "image_url": {}}, "x"]
    request = ChatCompletionRequest.model_validate(
        {
            "model": "moa",
            "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "b"}]}],
            "stream": None,
            "stream_options": None,
            "n": None,
            "temperature": "ignored",
            "max_tokens": -1,
            "tools": [{"any": "thing"}],
        }
    )
    assert request.openai_messages() == [{"role": "user", "content": "a b"}]
    assert not request.stream and not request.include_usage
    streamed = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": HELLO, "stream": True, "stream_options": {"include_usage": 1}}
    )
    assert streamed.stream and streamed.include_usage
    with pytest.raises(ValidationError) as info:  # a text part's text must be a string
        ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}
        )
    assert invalid_request(info.value).param == "messages[0].content"


def test_bodies_over_the_limit_get_413(fake: FakeOpenAIServer) -> None:
    app = create_app(
        {"moa": (two_proposers(), pool_for(fake, "p1", "p2", "agg"))}, max_body_bytes=10_000
    )
    big = json.dumps({"model": "moa", "messages": [{"role": "user", "content": "x" * 60_000}]})
    with running(app) as url:
        declared = httpx2.post(
            f"{url}/chat/completions", content=big, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "request_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            data = big.encode()
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        counted = httpx2.post(f"{url}/chat/completions", content=chunks())
        assert counted.status_code == 413
        small = httpx2.post(f"{url}/chat/completions", json={"model": "moa", "messages": HELLO})
        assert small.status_code == 200
    assert fake.count() == 4  # only the small request went upstream


def test_upstream_failures_are_502_with_the_reason_and_never_hang(
    fake: FakeOpenAIServer,
) -> None:
    fake.set_behavior("dead", ModelBehavior(fault_rate=1.0, fault_kinds=("500",)))
    fake.set_behavior("hung", ModelBehavior(fault_rate=1.0, fault_kinds=("hang",), hang_s=30))
    # the hung model times out fast; the others have room to answer on a loaded machine
    fast = pool_for(fake, "dead", "ok", retries=1, timeout_s=2.0)
    pool = Pool(models=(*fast.models, *pool_for(fake, "hung", retries=1, timeout_s=0.5).models))
    quorum_lost = MixtureConfig(
        layers=((AgentSpec(model="dead"), AgentSpec(model="ok")),),
        aggregator=AgentSpec(model="ok"),
        quorum=2,
    )
    agg_dead = MixtureConfig(layers=((AgentSpec(model="ok"),),), aggregator=AgentSpec(model="hung"))
    app = create_app({"quorum": (quorum_lost, pool), "agg": (agg_dead, pool)})
    with running(app) as url:
        # never hang: a client giving up after 5 s would raise APITimeoutError, not a 502
        c = client(url, timeout=5)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as info:
                c.chat.completions.create(model="quorum", messages=HELLO, stream=stream)
            assert info.value.status_code == 502
            message = str(info.value)
            assert "quorum is 2" in message and "dead" in message and "HTTP 500" in message
            assert info.value.body["code"] == "upstream_error"  # type: ignore[index]
        # two 0.5 s timeouts and a back-off, not the 30 s hang (the client gives up at 5 s)
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model="agg", messages=HELLO, stream=True)
        assert info.value.status_code == 502
        assert "hung" in str(info.value) and "timeout" in str(info.value)
        assert fake.count("hung") == 2


def test_a_failure_mid_stream_ends_with_an_sse_error_event(fake: FakeOpenAIServer) -> None:
    # every attempt of the aggregator breaks off half-way: text was already sent when it fails
    fake.set_behavior(
        "agg",
        ModelBehavior(
            fault_rate=1.0, fault_kinds=("truncate",), answer="one two three four five six"
        ),
    )
    pool = pool_for(fake, "p1", "agg", retries=1)
    m = MixtureConfig(layers=((AgentSpec(model="p1"),),), aggregator=AgentSpec(model="agg"))
    app = create_app({"moa": (m, pool)})
    with running(app) as url:
        received: list[str] = []
        with (
            client(url, timeout=5) as c,  # never hangs: a hang would raise APITimeoutError
            c.chat.completions.create(model="moa", messages=HELLO, stream=True) as stream,
            pytest.raises(openai.APIError) as info,
        ):
            for ch in stream:
                if ch.choices and ch.choices[0].delta.content:
                    received.append(ch.choices[0].delta.content)
        assert not isinstance(info.value, openai.APITimeoutError)
        assert "".join(received) == "one two three "  # the half that was sent, once
        assert "stream_interrupted" in str(info.value)
        raw = httpx2.post(
            f"{url}/chat/completions", json={"model": "moa", "messages": HELLO, "stream": True}
        )
        events = sse_data(raw.text)
        assert raw.status_code == 200 and events[-1] != "[DONE]"
        error = json.loads(events[-1])["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "upstream_error"


def test_concurrent_requests_share_the_executor_and_its_limits(fake: FakeOpenAIServer) -> None:
    fake.set_behavior("p1", ModelBehavior(latency_s=0.2))
    pool = pool_for(fake, "p1", "agg", concurrency=2)
    m = MixtureConfig(layers=((AgentSpec(model="p1"),),), aggregator=AgentSpec(model="agg"))
    app = create_app({"a": (m, pool), "b": (m.model_copy(update={"name": "b"}), pool)})
    assert len({id(mx.executor) for mx in app.state.moa.mixtures.values()}) == 1

    async def main(url: str) -> list[str]:
        async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as c:
            replies = await asyncio.gather(
                *(
                    c.chat.completions.create(
                        model="ab"[i % 2],
                        messages=[{"role": "user", "content": f"question {i}"}],
                        stream=i % 3 == 0,
                    )
                    for i in range(8)
                )
            )
            texts = []
            for r in replies:
                if isinstance(r, openai.AsyncStream):
                    texts.append(
                        "".join([ch.choices[0].delta.content or "" async for ch in r if ch.choices])
                    )
                else:
                    texts.append(r.choices[0].message.content or "")
            return texts

    with running(app) as url:
        texts = asyncio.run(main(url))
    assert all(f"question {i}" in t for i, t in enumerate(texts))
    # 8 proposer calls through one shared limit of 2 at a time (the upstream's own counter):
    # the requests to both served models queued behind one executor's limit
    assert fake.count("p1") == 8 and fake.peak_in_flight("p1") == 2


def test_tokens_are_forwarded_as_they_arrive(fake: FakeOpenAIServer) -> None:
    fake.set_behavior(
        "agg", ModelBehavior(stream_chunk_delay_s=0.5, answer="slow words one at a time")
    )
    pool = pool_for(fake, "p1", "agg")
    m = MixtureConfig(layers=((AgentSpec(model="p1"),),), aggregator=AgentSpec(model="agg"))
    app = create_app({"moa": (m, pool)})
    with running(app) as url:
        c = client(url)
        upstream_streaming: bool | None = None
        final = None
        for ch in c.chat.completions.create(
            model="moa", messages=HELLO, stream=True, extra_headers=TRACE
        ):
            if ch.choices and ch.choices[0].delta.content and upstream_streaming is None:
                # the first token reached the client while the upstream aggregator was still
                # streaming (six pieces 0.5 s apart): it was forwarded, not buffered
                upstream_streaming = fake.in_flight("agg") == 1
            if ch.choices and ch.choices[0].finish_reason:
                final = ch
    assert upstream_streaming is True and final is not None
    assert fake.in_flight("agg") == 0
    trace = final.model_extra["moa_trace"]
    assert trace["first_token_s"] is not None


def test_serving_ready_mixture_handles_and_inline_pools(fake: FakeOpenAIServer) -> None:
    pool = pool_for(fake, "p1", "p2", "agg")
    handle = Mixture(two_proposers("internal-name"), pool)
    inline = two_proposers("inline").model_copy(update={"pool": pool})
    app = create_app({"public": handle, "inline": inline})
    service = app.state.moa
    # the handle's executor is reused for the config on the same pool
    assert service.mixtures["inline"].executor is handle.executor
    with running(app) as url:
        c = client(url)
        assert sorted(m.id for m in c.models.list().data) == ["inline", "public"]
        resp = c.chat.completions.create(model="public", messages=HELLO)
        assert resp.model == "public" and resp.choices[0].message.content
    with pytest.raises(ValueError, match="no inline pool"):
        create_app({"bare": two_proposers()})
