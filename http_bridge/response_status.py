"""The status an ASGI app answered with, seen from a middleware (the access log and the request
metrics both need it)."""

from __future__ import annotations

from starlette.types import Message, Send


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
