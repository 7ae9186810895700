"""One HTTP connection pool per base URL, shared by every model at it, made before the first
layer starts and closed with the last model using it."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Iterator

import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool
from moa_search.runtime.backends import OpenAIBackend, http_pool
from moa_search.runtime.executor import Executor
from moa_search.testing import FakeOpenAIServer, ModelBehavior


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def pool_at(*urls_and_aliases: tuple[str, str]) -> Pool:
    return Pool(
        models=tuple(
            ModelSpec(alias=alias, base_url=url, model=alias, timeout_s=5, max_retries=0)
            for url, alias in urls_and_aliases
        )
    )


def test_models_at_one_url_reuse_one_connection(server: FakeOpenAIServer) -> None:
    pool = pool_at(*((server.base_url, a) for a in ("p1", "p2", "agg")))
    # one proposer per layer: the calls run one after another, so one kept-alive connection
    # serves all of them only if the three models share one pool
    mixture = MixtureConfig(
        layers=((AgentSpec(model="p1"),), (AgentSpec(model="p2"),)),
        aggregator=AgentSpec(model="agg"),
    )
    result = Executor(pool).run(mixture, "hello")
    assert [c.model for c in result.trace.calls] == ["p1", "p2", "agg"]
    assert all(c.ok for c in result.trace.calls)
    assert server.count() == 3
    assert server.connections_accepted == 1


def test_concurrent_calls_still_open_their_own_connections(server: FakeOpenAIServer) -> None:
    for alias in ("p1", "p2", "p3"):
        server.set_behavior(alias, ModelBehavior(latency_s=0.2))
    pool = pool_at(*((server.base_url, a) for a in ("p1", "p2", "p3")))
    mixture = MixtureConfig(
        layers=((AgentSpec(model="p1"), AgentSpec(model="p2"), AgentSpec(model="p3")),),
        aggregator=AgentSpec(model="p1"),
    )
    result = Executor(pool).run(mixture, "hello")
    assert all(c.ok for c in result.trace.calls)
    # sharing a pool never serialises a layer: the three proposers were in flight together
    assert server.peak_in_flight("p1") == 1 and server.max_in_flight == 3
    assert server.connections_accepted == 3  # the aggregator reused one of them


def test_the_pool_is_shared_per_url_and_closed_with_its_last_user() -> None:
    a_url, b_url = "http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1/"
    a1, a2, b = (
        OpenAIBackend(spec) for spec in pool_at((a_url, "x"), (a_url, "y"), (b_url, "z")).models
    )

    async def main() -> None:
        shared = http_pool.acquire(a_url, a1)
        assert http_pool.acquire(a_url + "/", a2) is shared  # a trailing slash is the same URL
        other = http_pool.acquire(b_url, b)
        assert other is not shared
        await http_pool.release(a_url, a1)
        assert not shared.is_closed  # a2 still uses it
        await http_pool.release(a_url, a1)  # releasing twice changes nothing
        assert not shared.is_closed
        await http_pool.release(a_url, a2)
        assert shared.is_closed
        assert not other.is_closed
        await http_pool.release(b_url, b)
        assert other.is_closed
        fresh = http_pool.acquire(a_url, a1)  # a closed pool is replaced, not handed out
        assert fresh is not shared and not fresh.is_closed
        await http_pool.release(a_url, a1)

    asyncio.run(main())


def test_each_event_loop_gets_its_own_pool() -> None:
    url = "http://127.0.0.1:9/v1"
    (spec,) = pool_at((url, "x")).models
    backend = OpenAIBackend(spec)

    async def clients() -> object:
        return http_pool.acquire(url, backend)

    first = asyncio.run(clients())
    second = asyncio.run(clients())
    assert first is not second


def test_a_backend_shares_the_pool_and_releases_it_on_close(server: FakeOpenAIServer) -> None:
    specs = pool_at((server.base_url, "p1"), (server.base_url, "p2")).models
    b1, b2 = OpenAIBackend(specs[0]), OpenAIBackend(specs[1])

    async def main() -> None:
        c1, c2 = b1.client(), b2.client()
        assert c1 is not c2  # each model has its own client (key, timeout) ...
        shared = http_pool.acquire(server.base_url, b1)
        # ... on the one HTTP pool of their URL (re-acquiring by the same user is a no-op)
        assert c1._client is shared and c2._client is shared
        await b1.aclose()
        assert not shared.is_closed
        await b2.aclose()
        assert shared.is_closed

    asyncio.run(main())


def test_tls_contexts_are_made_once_and_verify() -> None:
    https = http_pool.tls_context(True)
    assert http_pool.tls_context(True) is https
    assert https.verify_mode == ssl.CERT_REQUIRED and https.check_hostname
    plain = http_pool.tls_context(False)
    assert http_pool.tls_context(False) is plain
    # the context of plain-http pools verifies too (no CA loaded: a redirect to https fails)
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0


def test_constructing_a_backend_imports_what_the_first_request_would() -> None:
    (spec,) = pool_at(("https://example.invalid/v1", "x")).models
    OpenAIBackend(spec)
    assert all(name in sys.modules for name in http_pool._LAZY_IMPORTS)
