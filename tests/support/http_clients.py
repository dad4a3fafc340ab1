"""httpx clients for the tests, sharing one TLS context. httpx builds a new one for every client
it makes, loading certifi's CA bundle (40 ms a client, which every HTTP test paid once), though
the tests call plain http:// URLs; verification stays on, with the same bundle."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def async_http_client(**options: Any) -> httpx.AsyncClient:
    """`httpx.AsyncClient(**options)` on the shared TLS context; `options` are the client's own
    keyword arguments (any of them, so Any)."""
    return httpx.AsyncClient(verify=shared_tls_context(), **options)
