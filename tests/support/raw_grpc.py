"""A gRPC client that speaks HTTP/2 frame by frame, to behave as a hostile or broken client
would: open streams and never send their message, end a unary call with no message or with a
truncated length prefix, open more streams than the server allows, ping too often.

It is built on hyperframe (frames) and hpack (header compression) rather than h2's connection
object, because h2's state machine refuses exactly what these tests must send (for example a
stream beyond SETTINGS_MAX_CONCURRENT_STREAMS). It does the minimum a live peer does, so that
the server sees a client that is slow or wrong, not a dead one: it acknowledges the server's
SETTINGS and PINGs and returns flow-control credit for every DATA frame it receives.

    client = await RawGrpcClient.connect(port)
    stream = client.start_call("/tokenservice.v1.TokenService/IntrospectToken")
    client.end_stream(stream)              # a unary call with no message
    outcome = await client.outcome(stream)  # outcome.grpc_status == 3
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import struct
import urllib.parse
from collections.abc import Iterable
from typing import Any

from google.rpc import error_details_pb2, status_pb2
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES = 9
# HTTP/2 error codes (RFC 9113 section 7) that these tests look for.
NO_ERROR = 0x0
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
WAIT_SECONDS = 10.0  # generous bound for anything the server is expected to do "at once"


def grpc_message(payload: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length, the bytes."""
    return struct.pack(">BI", 0, len(payload)) + payload


@dataclasses.dataclass
class StreamOutcome:
    """What the server answered on one stream."""

    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    trailers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    data: bytes = b""
    reset_code: int | None = None  # RST_STREAM's error code, when the server reset the stream
    ended: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def _value(self, name: str) -> str | None:
        # A trailers-only answer carries grpc-status in its one HEADERS frame.
        for key, value in (*self.trailers, *self.headers):
            if key == name:
                return value
        return None

    @property
    def grpc_status(self) -> int | None:
        value = self._value("grpc-status")
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        return urllib.parse.unquote(self._value("grpc-message") or "")

    @property
    def rich_status(self) -> status_pb2.Status | None:
        """The google.rpc.Status of grpc-status-details-bin, if the server sent one."""
        value = self._value("grpc-status-details-bin")
        if value is None:
            return None
        # A -bin header is base64, padding left out (the gRPC over HTTP/2 spec).
        return status_pb2.Status.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))

    @property
    def error_reason(self) -> str | None:
        info = self._detail(error_details_pb2.ErrorInfo)
        return None if info is None else str(info.reason)

    @property
    def retry_delay_seconds(self) -> int | None:
        retry = self._detail(error_details_pb2.RetryInfo)
        return None if retry is None else int(retry.retry_delay.seconds)

    def _detail(self, kind: type[Any]) -> Any:
        """The first detail of type `kind` in the rich status, if any."""
        status = self.rich_status
        for detail in status.details if status else ():
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                return message
        return None


@dataclasses.dataclass(frozen=True)
class GoAway:
    last_stream_id: int
    error_code: int
    debug_data: bytes


class RawGrpcClient:
    """One HTTP/2 connection to a gRPC server, written to frame by frame."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answer_pings: bool
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._encoder = Encoder()
        self._decoder = Decoder()
        self._next_stream_id = 1
        self._streams: dict[int, StreamOutcome] = {}
        self._header_block: tuple[int, bytearray, bool] | None = None
        self.remote_settings: dict[int, int] = {}
        self._settings_received = asyncio.Event()
        self.answer_pings = answer_pings  # False: a dead peer, as far as keepalive can tell
        self.pings_received = 0
        self.ping_acks = 0
        self.goaway: GoAway | None = None
        self.closed = asyncio.Event()
        self._read_task = asyncio.create_task(self._read_frames())

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", *, answer_pings: bool = True
    ) -> RawGrpcClient:
        """Connects, sends the preface and waits for the server's first SETTINGS."""
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer, answer_pings=answer_pings)
        writer.write(PREFACE + SettingsFrame(0).serialize())
        await client.flush()
        settings = asyncio.ensure_future(client._settings_received.wait())
        closed = asyncio.ensure_future(client.closed.wait())
        await asyncio.wait({settings, closed}, timeout=WAIT_SECONDS, return_when="FIRST_COMPLETED")
        settings.cancel()
        closed.cancel()
        if not client._settings_received.is_set():
            await client.close()
            raise ConnectionError("the server sent no SETTINGS (it closed the connection)")
        return client

    # --- what the client sends ----------------------------------------------------------------

    def start_call(
        self,
        method: str,
        metadata: Iterable[tuple[str, str]] = (),
        *,
        end_stream: bool = False,
    ) -> int:
        """A new stream's request HEADERS for `method`; returns the stream id."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        self._streams[stream_id] = StreamOutcome()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *metadata,
        ]
        frame = HeadersFrame(stream_id, self._encoder.encode(headers))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        self._writer.write(frame.serialize())
        return stream_id

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = True) -> None:
        frame = DataFrame(stream_id, data)
        if end_stream:
            frame.flags.add("END_STREAM")
        self._writer.write(frame.serialize())

    def send_message(self, stream_id: int, payload: bytes, *, end_stream: bool = True) -> None:
        self.send_data(stream_id, grpc_message(payload), end_stream=end_stream)

    def end_stream(self, stream_id: int) -> None:
        """Half-closes the stream with an empty DATA frame."""
        self.send_data(stream_id, b"", end_stream=True)

    def reset(self, stream_id: int) -> None:
        """Cancels the stream (RST_STREAM CANCEL), as a client giving up on a call does."""
        self._writer.write(RstStreamFrame(stream_id, error_code=CANCEL).serialize())

    def ping(self, opaque: bytes = b"\x00" * 8) -> None:
        self._writer.write(PingFrame(0, opaque).serialize())

    async def flush(self) -> None:
        await self._writer.drain()

    async def close(self) -> None:
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._read_task
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    # --- what the server answered -------------------------------------------------------------

    def stream(self, stream_id: int) -> StreamOutcome:
        return self._streams[stream_id]

    @property
    def open_streams(self) -> int:
        """Streams this client started that the server has not ended yet."""
        return sum(not outcome.ended.is_set() for outcome in self._streams.values())

    def forget_ended(self) -> list[StreamOutcome]:
        """Removes the streams the server has ended from this client and returns them (a long
        attack would otherwise keep every stream it ever opened)."""
        ended = [outcome for outcome in self._streams.values() if outcome.ended.is_set()]
        self._streams = {
            stream_id: outcome
            for stream_id, outcome in self._streams.items()
            if not outcome.ended.is_set()
        }
        return ended

    async def outcome(self, stream_id: int, seconds: float = WAIT_SECONDS) -> StreamOutcome:
        """Waits until the server ends the stream (trailers or RST_STREAM), at most `seconds`."""
        outcome = self._streams[stream_id]
        await asyncio.wait_for(outcome.ended.wait(), seconds)
        return outcome

    async def wait_closed(self, seconds: float = WAIT_SECONDS) -> None:
        """Waits until the server closes the connection."""
        await asyncio.wait_for(self.closed.wait(), seconds)

    async def _read_frames(self) -> None:
        try:
            while True:
                header = await self._reader.readexactly(FRAME_HEADER_BYTES)
                frame, length = Frame.parse_frame_header(memoryview(header))
                frame.parse_body(memoryview(await self._reader.readexactly(length)))
                await self._receive(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for outcome in self._streams.values():
                outcome.ended.set()

    async def _receive(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                self.remote_settings.update(frame.settings)
                self._writer.write(SettingsFrame(0, flags=["ACK"]).serialize())
                self._settings_received.set()
        elif isinstance(frame, PingFrame):
            if "ACK" in frame.flags:
                self.ping_acks += 1
            else:
                self.pings_received += 1
                if self.answer_pings:
                    self._writer.write(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
        elif isinstance(frame, GoAwayFrame):
            self.goaway = GoAway(frame.last_stream_id, frame.error_code, frame.additional_data)
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            self._receive_header_block(frame)
        elif isinstance(frame, DataFrame):
            self._receive_data(frame)
        elif isinstance(frame, RstStreamFrame):
            outcome = self._streams.get(frame.stream_id)
            if outcome is not None:
                outcome.reset_code = frame.error_code
                outcome.ended.set()
        await self._writer.drain()

    def _receive_header_block(self, frame: HeadersFrame | ContinuationFrame) -> None:
        if isinstance(frame, HeadersFrame):
            self._header_block = (
                frame.stream_id,
                bytearray(frame.data),
                "END_STREAM" in frame.flags,
            )
        assert self._header_block is not None, "CONTINUATION without HEADERS"
        stream_id, block, ends = self._header_block
        if isinstance(frame, ContinuationFrame):
            block += frame.data
        if "END_HEADERS" not in frame.flags:
            return
        self._header_block = None
        fields = [(str(k), str(v)) for k, v in self._decoder.decode(bytes(block))]
        outcome = self._streams.get(stream_id)
        if outcome is None:
            return
        if outcome.headers:
            outcome.trailers = fields
        else:
            outcome.headers = fields
        if ends:
            outcome.ended.set()

    def _receive_data(self, frame: DataFrame) -> None:
        outcome = self._streams.get(frame.stream_id)
        if outcome is not None:
            outcome.data += frame.data
        credit = frame.flow_controlled_length
        if credit:  # give the credit back at once, so the server never stalls on us
            self._writer.write(WindowUpdateFrame(0, credit).serialize())
            if outcome is not None and not outcome.ended.is_set():
                self._writer.write(WindowUpdateFrame(frame.stream_id, credit).serialize())
        if "END_STREAM" in frame.flags and outcome is not None:
            outcome.ended.set()
