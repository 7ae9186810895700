"""Writing the fake server's chat responses: JSON bodies, SSE streams, malformed bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from moa_search.serve import wire
from moa_search.testing.fake_openai import http
from moa_search.testing.fake_openai import wire as fake_wire
from moa_search.testing.fake_openai.faults import ModelBehavior

__all__ = ["send_json", "send_malformed", "send_stream"]


async def send_malformed(writer: asyncio.StreamWriter, stream: bool, keep_alive: bool) -> bool:
    if not stream:
        return await http.send(writer, 200, fake_wire.MALFORMED_JSON, keep_alive=keep_alive)
    headers = [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Transfer-Encoding", "chunked"),
        http.connection_header(keep_alive),
    ]
    body = http.chunked(fake_wire.MALFORMED_SSE) + http.LAST_CHUNK
    writer.write(http.head(200, headers) + body)
    await writer.drain()
    return keep_alive


async def send_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    behavior: ModelBehavior,
    completion_id: str,
    chunks: Sequence[wire.ChatCompletionChunk],
    truncate: bool,
    keep_alive: bool,
) -> bool:
    """Send ``chunks`` as SSE events, ``stream_chunk_delay_s`` apart; a truncated stream
    stops after them and closes the connection."""
    headers = [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("Transfer-Encoding", "chunked"),
        ("x-request-id", completion_id),
        http.connection_header(keep_alive and not truncate),
    ]
    writer.write(http.head(200, headers))
    delay = behavior.stream_chunk_delay_s
    for index, chunk in enumerate(chunks):
        if index > 0 and delay > 0 and not await http.wait(reader, writer, delay):
            return False
        writer.write(http.chunked(wire.sse_event(chunk)))
        await writer.drain()
    if truncate:
        writer.close()
        return False
    writer.write(http.chunked(wire.DONE_EVENT) + http.LAST_CHUNK)
    await writer.drain()
    return keep_alive


async def send_json(
    writer: asyncio.StreamWriter,
    status: int,
    obj: Mapping[str, object],
    *,
    keep_alive: bool,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bool:
    """Send ``obj`` as JSON, with an ``x-request-id`` header if it has a string ``id``."""
    headers = list(extra_headers)
    request_id = obj.get("id")
    if isinstance(request_id, str):
        headers.append(("x-request-id", request_id))
    return await http.send(
        writer, status, wire.dumps(obj), keep_alive=keep_alive, extra_headers=headers
    )
