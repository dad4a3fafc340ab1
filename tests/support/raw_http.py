"""HTTP/1.1 over a raw asyncio stream, for tests that must control every byte a client sends
(slow heads, oversized heads, connections held open) and read exactly what the server answers."""

from __future__ import annotations

import asyncio

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Response = tuple[int, dict[str, str], bytes]
WITHIN = 10.0


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-case names) of a response head."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def parse(raw: bytes) -> Response:
    """A whole response read to the end of the connection."""
    head, _, body = raw.partition(b"\r\n\r\n")
    return (*parse_head(head), body)


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One response on a connection that stays open (body by Content-Length)."""
    async with asyncio.timeout(WITHIN):
        status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def exchange(streams: Streams, request: bytes) -> Response:
    reader, writer = streams
    writer.write(request)
    return await read_response(reader)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (at most WITHIN seconds)."""
    received = b""
    async with asyncio.timeout(WITHIN):
        while chunk := await reader.read(65536):
            received += chunk
    return received
