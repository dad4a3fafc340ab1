"""What the access log and the request metrics both see of a request: the status the app
answered with and how long it took, from one pure ASGI middleware base (Starlette's
BaseHTTPMiddleware costs a task and queues per request)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseStatus:
    """Wraps `send`, remembering the status of the response start; 500 when the app sent none
    (it raised before answering)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)


class ObservedRequests:
    """A middleware told of every HTTP request when it starts and when it ends (status and
    seconds), whether the app answered or raised. Subclasses say whether they observe at all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def observing(self) -> bool:
        return True

    def started(self, scope: Scope) -> None:
        """Called before the app runs."""

    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        """Called once the app has answered or raised."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.observing():
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        self.started(scope)
        try:
            await self.app(scope, receive, status)
        finally:
            self.finished(scope, status.code, time.perf_counter() - started)
