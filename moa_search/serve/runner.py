"""Running an ASGI app under uvicorn: in the foreground until interrupted, or in a daemon thread
(tests, notebooks, embedding). Key-like strings in uvicorn's logs, the access log's query
strings included, are masked (:mod:`moa_search.serve.masking`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from starlette.types import ASGIApp

from moa_search.serve.masking import SERVING_LOGGERS, install_log_masking

__all__ = ["run_until_interrupted", "running"]


def run_until_interrupted(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    use_colors: bool | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT/SIGTERM, lifespan included. ``use_colors``
    None lets uvicorn colour its log when stdout is a terminal."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, lifespan="on", use_colors=use_colors
    )
    install_log_masking(*SERVING_LOGGERS)  # after the Config set uvicorn's logging up
    uvicorn.Server(config).run()


@contextlib.contextmanager
def running(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    start_timeout_s: float = 10.0,
    log_level: str = "warning",
) -> Iterator[str]:
    """Run ``app`` under uvicorn in a daemon thread (tests, notebooks, embedding).

    Yields the base URL ``http://HOST:PORT/v1`` once the server listens (``port`` 0 picks a
    free one); on exit, shuts the server down gracefully (lifespan included) and joins the
    thread. Raises ``RuntimeError`` if it does not start within ``start_timeout_s``.
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
    install_log_masking(*SERVING_LOGGERS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="moa-search-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound}/v1"
    finally:
        server.should_exit = True
        thread.join(start_timeout_s)
