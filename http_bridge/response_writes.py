"""One socket write per response: a response's head and its body leave together.

uvicorn's httptools protocol writes a response in two `transport.write` calls, the status line
and headers on `http.response.start` and the body on `http.response.body`. The transport tries
each write on the socket at once, so every answer costs two `send` system calls and two TCP
segments; on this service's small JSON answers the write path was the largest single frame of
an HTTP introspection (bench/results.md, "Profiles"). `HeadWithBody` wraps the connection's
transport: a write that is a complete response head is held, and the next write (the body,
which Starlette sends in the same turn of the event loop) goes out joined to it. A head whose
body does not follow at once (a HEAD request, a stream that waits for its first event) is
written at the end of the current turn by a `call_soon`, so a client never waits on a held
head; `close` writes it first and `abort` drops it, as the transport does with its own buffer.
Everything else is the wrapped transport's.
"""

from __future__ import annotations

import asyncio
from typing import Any

HEAD_START = b"HTTP/1.1 "
HEAD_END = b"\r\n\r\n"


class HeadWithBody:
    """A transport that writes a response head together with the write after it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[:9] == HEAD_START and data[-4:] == HEAD_END:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Writes a held head now (a no-op once its body has taken it)."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        self.flush()
        self._transport.writelines(chunks)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        held = self._held
        return self._transport.get_write_buffer_size() + (len(held) if held else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
