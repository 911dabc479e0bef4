"""One TLS context per process for the HTTP clients the platform opens and closes often.

An `httpx.AsyncClient()` (or `httpx2`'s, the MCP SDK's) made without one builds a new context and
loads the CA bundle into it: about 44 ms of CPU on the 2-core reference machine, on the event
loop, for every client, whether it ever speaks TLS or not. The MCP client opens a session (and so
a client) for every exactly-once tool execution, and the supervisor's health checks one every
0.25 s per part while the stack starts. Made once and shared (an `ssl.SSLContext` is safe to use
for many connections at once), a client costs 0.2 ms. The context is each library's own default
(certificates verified, `SSL_CERT_FILE` / `SSL_CERT_DIR` read when it is first made).
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def httpx_tls() -> ssl.SSLContext:
    """httpx's default verifying context, made once."""
    import httpx

    return httpx.create_ssl_context()


@functools.cache
def httpx2_tls() -> ssl.SSLContext:
    """httpx2's (the MCP SDK's HTTP client) default verifying context, made once."""
    import httpx2

    return httpx2.create_ssl_context()
