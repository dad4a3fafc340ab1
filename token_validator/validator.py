"""TokenValidator: introspects tokens over gRPC as a service client, keeps the answers
(token_validator/answers.py), and follows the revocation feed (WatchRevocations) so that a
revoked token is dropped as soon as the service says so, and answers can be kept longer than
their hints while it does.

Following means: the stream is open and caught up (its reset, or what was missed since the
last position and the heartbeat after it, handled), and a message (an event or a heartbeat)
came within `stale_after` seconds. While it is not, every active answer is good for its
`cache_seconds` only, so a lost stream costs freshness for no longer than the hints. The
stream is reopened from the last position with a backoff, so what happened meanwhile is
delivered, or a reset says to drop everything.

A revocation heard while a question was on its way could concern its answer, which may then
describe the token as it was before: such an answer is given to its caller (whose question came
first) and not kept.

Errors (the service unreachable, a refused client) are raised, never cached, and never turn
into an "active" answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable

import grpc

from token_validator.answers import Answers
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

log = logging.getLogger("token_validator")


def token_sha256(token: str) -> str:
    """The cache key, and the name the revocation feed gives a token."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


class TokenValidator:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        client_id: str,
        client_secret: str,
        *,
        capacity: int = 10_000,
        follow_revocations: bool = True,
        stale_after: float = 35.0,
        introspection_timeout: float = 5.0,
        retry_seconds: float = 0.1,
        max_retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[pb.RevocationEvent], None] | None = None,
    ) -> None:
        """`on_event` is called with each event of the feed once it has been applied (for a
        resource server's metrics, and the tests that measure how soon a revocation lands)."""
        self._stub = pb_grpc.TokenServiceStub(channel)
        self._caller = pb.ClientAuthentication(client_id=client_id, client_secret=client_secret)
        self._answers = Answers(capacity)
        self._follow = follow_revocations
        self._stale_after = stale_after
        self._timeout = introspection_timeout
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._clock = clock
        self._on_event = on_event
        self._task: asyncio.Task[None] | None = None
        self._last_message = float("-inf")
        self._connected = False
        self.position = ""  # the last position handled: where a new stream resumes
        self.revocations = 0  # events that named something, for tests and metrics
        self.generation = 0  # bumped by every event that drops answers
        self.following_changed = asyncio.Event()

    @property
    def following(self) -> bool:
        """Whether revocations are followed now (see the module docstring)."""
        recent = self._clock() - self._last_message < self._stale_after
        return self._follow and self._connected and recent

    async def start(self) -> None:
        """Starts following the revocation feed in the background."""
        if self._follow and self._task is None:
            self._task = asyncio.create_task(self._run(), name="token-validator-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._connected = False

    async def introspect(self, token: str) -> pb.IntrospectTokenResponse:
        """The service's answer about `token`, from the cache when it is still good."""
        key = token_sha256(token)
        sent = self._clock()
        cached = self._answers.get(key, sent, self.following)
        if cached is not None:
            return cached
        following, generation = self.following, self.generation
        answer: pb.IntrospectTokenResponse = await self._stub.IntrospectToken(
            pb.IntrospectTokenRequest(token=token, caller=self._caller), timeout=self._timeout
        )
        if generation != self.generation:
            return answer  # a revocation crossed the question: its answer may predate it
        self._answers.put(key, answer, sent, followed=following and self.following)
        return answer

    async def active(self, token: str) -> bool:
        return bool((await self.introspect(token)).active)

    def cached(self) -> int:
        return len(self._answers)

    # --- the feed ---------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self._retry
        while True:
            try:
                await self._follow_stream()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                log.warning("revocation feed lost (%s); resuming", error.code().name)
            except TimeoutError:
                log.warning("revocation feed silent for %.0f s; resuming", self._stale_after)
            else:
                delay = self._retry  # the server ended it (draining): resume at once
            self._set_connected(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry)

    async def _follow_stream(self) -> None:
        request = pb.WatchRevocationsRequest(caller=self._caller, after=self.position)
        call = self._stub.WatchRevocations(request)
        try:
            while True:
                event = await asyncio.wait_for(call.read(), self._stale_after)
                if event is grpc.aio.EOF:
                    return
                assert isinstance(event, pb.RevocationEvent)
                self._apply(event)
        finally:
            call.cancel()

    def _apply(self, event: pb.RevocationEvent) -> None:
        """A reset or a heartbeat says the stream is caught up (a resume's missed events come
        first, then a heartbeat); a revocation event alone does not."""
        if event.reset:
            self._answers.clear()
            self.generation += 1
        elif event.token_sha256 or event.session_ids:
            self._answers.drop_tokens(list(event.token_sha256))
            self._answers.drop_sessions(list(event.session_ids))
            self.generation += 1
            self.revocations += 1
        self.position = event.position
        self._last_message = self._clock()
        if event.reset or event.heartbeat:
            self._set_connected(True)
        if self._on_event is not None:
            self._on_event(event)

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            self.following_changed.set()
