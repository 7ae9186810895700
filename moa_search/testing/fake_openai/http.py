"""Raw HTTP/1.1 over :mod:`asyncio` streams: reading requests, writing responses.

No web framework, so that faults can reach down to the socket: a response can be cut short,
sent with a ``Content-Length`` it does not keep, or replaced by a TCP reset (:func:`abort`).
Requests are read with a ``Content-Length`` or chunked body; responses are written whole
(:func:`send`) or framed chunk by chunk (:func:`head`, :func:`chunked`, :data:`LAST_CHUNK`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LAST_CHUNK",
    "MAX_HEADER_LINE",
    "BadRequestError",
    "HttpRequest",
    "abort",
    "chunked",
    "connection_header",
    "head",
    "read_request",
    "send",
    "wait",
]

#: The longest request line or header line read (the ``StreamReader`` limit).
MAX_HEADER_LINE = 64 * 1024
#: The terminator of a chunked body.
LAST_CHUNK = b"0\r\n\r\n"

_MAX_HEADERS = 100
_POLL_S = 0.02


@dataclass
class HttpRequest:
    """One request as read off the connection; header names are lower-case."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class BadRequestError(Exception):
    """The bytes received are not an HTTP/1.x request we can parse."""


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """Read one HTTP request; None on a clean EOF between requests.

    Raises :class:`BadRequestError` for bytes that are not a request, ``ValueError`` for a line
    over :data:`MAX_HEADER_LINE` and ``asyncio.IncompleteReadError`` when the peer stops
    mid-request.
    """
    line = b""
    while not line.strip():  # tolerate stray CRLFs between requests
        line = await reader.readline()
        if not line:
            return None
        if not line.endswith(b"\n"):
            return None  # EOF in the middle of the request line
    try:
        method, target, version = line.decode("latin-1").strip().split(" ", 2)
    except ValueError as exc:
        raise BadRequestError(f"bad request line {line[:100]!r}") from exc
    if not version.startswith("HTTP/1."):
        raise BadRequestError(f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        raw = await reader.readline()
        if not raw.endswith(b"\n"):
            raise asyncio.IncompleteReadError(raw, None)
        if raw in (b"\r\n", b"\n"):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise BadRequestError(f"bad header line {raw[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadRequestError("too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked_body(reader)
    else:
        try:
            length = int(headers.get("content-length", "0") or "0")
        except ValueError as exc:
            raise BadRequestError("bad Content-Length") from exc
        if length < 0:
            raise BadRequestError("negative Content-Length")
        body = await reader.readexactly(length) if length else b""
    return HttpRequest(method.upper(), target, version, headers, body)


async def _read_chunked_body(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadRequestError("bad chunk size") from exc
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # skip trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    """The status line and headers of a response, up to the blank line."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(data: bytes) -> bytes:
    """``data`` framed as one chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"


def connection_header(keep_alive: bool) -> tuple[str, str]:
    """The ``Connection`` header announcing whether the connection stays open."""
    return ("Connection", "keep-alive" if keep_alive else "close")


async def send(
    writer: asyncio.StreamWriter,
    status: int,
    payload: bytes,
    *,
    keep_alive: bool,
    content_type: str = "application/json",
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bool:
    """Write a whole response with its ``Content-Length``; returns ``keep_alive``."""
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(payload))),
        connection_header(keep_alive),
        *extra_headers,
    ]
    writer.write(head(status, headers) + payload)
    await writer.drain()
    return keep_alive


def abort(writer: asyncio.StreamWriter) -> None:
    """Abort the connection so that the peer sees a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float) -> bool:
    """Sleep ``seconds``; return False early if the client closes the connection meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        if reader.at_eof() or writer.is_closing():
            return False
        remaining = deadline - loop.time()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(remaining, _POLL_S))
