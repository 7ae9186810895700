"""One HTTP connection pool per (event loop, base URL), shared by every model at that URL.

Creating an HTTP client is not free: the transport builds a TLS context (loading the system's
CA certificates took 30-150 ms per client on a 2-core machine) and the first client of a process
imports the transport's connection layer (~0.1-0.4 s). Done at a model's first call, per model,
that landed on a cold run's critical path (layer 1 finished ~0.3-0.5 s after its slowest
proposer). So:

- :func:`prepare` (called when a backend is constructed, i.e. when an executor is built, before
  any layer starts) imports the transport and what it would import lazily at its first request
  (~0.1 s), and the SDK's platform header, builds the process's TLS contexts once, and makes the
  pool for the base URL ahead of the first event loop;
- every model at one base URL shares one client (one connection pool) per event loop, each
  with its own ``AsyncOpenAI`` wrapper (its own key and timeout) on top;
- a pool is closed when the last backend using it releases it (:func:`release`).

TLS: ``https://`` URLs share one context with the transport's default CA store. Plain
``http://`` URLs get a verifying context with no CA loaded (building it costs nothing): such a
pool never needs TLS, and a redirect to ``https://`` fails closed instead of skipping
verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ssl
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import openai

__all__ = ["acquire", "platform_of", "prepare", "release", "tls_context"]

#: What the transport imports only at its first request in an event loop (its async backend and
#: socket streams): imported by :func:`prepare` instead, off the critical path.
_LAZY_IMPORTS = ("anyio._backends._asyncio", "anyio._core._sockets", "concurrent.futures.thread")

_lock = threading.Lock()
_warm = False
_platform: object = None
_tls: dict[bool, ssl.SSLContext] = {}
# Pools made by prepare() outside any event loop, waiting for their first loop.
_unbound: dict[str, _Shared] = {}
# loop -> base URL -> pool. Weak on the loop, so a loop that ended drops its pools.
_bound: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Shared]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class _Shared:
    client: Any  # the transport's AsyncClient (httpx or its successor)
    users: set[int] = field(default_factory=set)


def _key(base_url: str) -> str:
    return base_url.rstrip("/")


def _transport_module() -> Any:
    """The HTTP library under the openai client (``httpx`` or ``httpx2``), by its client class."""
    base = next(
        c for c in openai.DefaultAsyncHttpxClient.__mro__ if not c.__module__.startswith("openai")
    )
    return importlib.import_module(base.__module__.split(".")[0])


def tls_context(https: bool) -> ssl.SSLContext:
    """The process's TLS context for ``https`` URLs (the transport's default CA store), or for
    plain ``http`` ones (verifying, no CA: a redirect to https fails closed). Made once."""
    with _lock:
        ctx = _tls.get(https)
        if ctx is None:
            if https:
                ctx = _transport_module().create_ssl_context()
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            _tls[https] = ctx
        return ctx


def _new_client(base_url: str) -> Any:
    https = base_url.lower().startswith("https:")
    return openai.DefaultAsyncHttpxClient(verify=tls_context(https))


def prepare(base_url: str) -> None:
    """Make the pool for ``base_url`` ahead of time (off the critical path of the first call):
    imports the transport and builds the TLS context once per process. Idempotent."""
    global _warm, _platform
    if not _warm:
        for name in _LAZY_IMPORTS:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        with contextlib.suppress(Exception):  # an SDK without it computes it itself
            _platform = importlib.import_module("openai._base_client").get_platform()
        _warm = True
    key = _key(base_url)
    with _lock:
        if key in _unbound:
            return
    client = _new_client(base_url)
    with _lock:
        _unbound.setdefault(key, _Shared(client))


def platform_of(client: openai.AsyncOpenAI) -> None:
    """Give a new ``AsyncOpenAI`` the platform description its headers carry, computed once by
    :func:`prepare`: the SDK would otherwise compute it on a helper thread at each client's
    first request (a thread start and ``platform.platform()`` on the critical path)."""
    if _platform is not None and getattr(client, "_platform", ...) is None:
        setattr(client, "_platform", _platform)  # noqa: B010 - the SDK's private cache


def acquire(base_url: str, user: object) -> Any:
    """The shared HTTP client for ``base_url`` in the running event loop, registering ``user``
    (a backend) until it calls :func:`release`."""
    loop = asyncio.get_running_loop()
    key = _key(base_url)
    with _lock:
        pools = _bound.setdefault(loop, {})
        shared = pools.get(key)
        if shared is None or shared.client.is_closed:
            shared = _unbound.pop(key, None)
            if shared is None or shared.client.is_closed:
                shared = None
    if shared is None:
        shared = _Shared(_new_client(base_url))
    with _lock:
        shared = pools.setdefault(key, shared)
        shared.users.add(id(user))
        return shared.client


async def release(base_url: str, user: object) -> None:
    """``user`` no longer uses the pool of ``base_url`` in the running loop; the pool is closed
    when nobody does."""
    loop = asyncio.get_running_loop()
    key = _key(base_url)
    with _lock:
        pools = _bound.get(loop, {})
        shared = pools.get(key)
        if shared is None or id(user) not in shared.users:
            return
        shared.users.discard(id(user))
        if shared.users:
            return
        del pools[key]
    await shared.client.aclose()
