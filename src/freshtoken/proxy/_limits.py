"""Every timeout and size limit on the proxy's request path, in one validated value.

The defaults follow nginx where nginx has an equivalent (``client_header_timeout``,
``keepalive_timeout``, ``client_max_body_size``, ``proxy_connect_timeout``, ``proxy_read_timeout``);
the field names are the keys of the configuration file's ``[limits]`` table.
"""

from __future__ import annotations

from pydantic.dataclasses import dataclass

from freshtoken._schema import MODEL_CONFIG, Count, PositiveCount, PositiveSeconds

__all__ = ["Limits"]


@dataclass(config=MODEL_CONFIG)
class Limits:
    """Timeouts (seconds) and limits of the proxy's request path; every wait is bounded.

    Upstream (the proxy as a client):

    - ``connect_timeout``: opening a connection to an upstream (TCP and TLS) → 504.
    - ``response_timeout``: from sending a request to the upstream's response head → 504.
    - ``read_timeout``: between two reads of a response body that is not an SSE stream; an SSE
      stream may stay idle for as long as the upstream likes (a dead connection still ends it).
    - ``upstream_connections``: open connections per upstream origin; more requests wait for
      one (within ``response_timeout``). ``0``: no limit beyond ``max_connections``.
    - ``upstream_idle_timeout``: an idle keep-alive connection to an upstream is closed after
      this, shorter than common servers' own idle timeouts (5 s for Node.js and uvicorn), so the
      proxy does not reuse a connection the server is closing.

    Downstream (the proxy as a server):

    - ``header_timeout``: a client's request head must arrive within this, from the connection's
      first byte (or the previous response) → the connection is closed.
    - ``body_timeout``: between two reads of a client's request body → the connection is closed.
    - ``keepalive_timeout``: an idle client keep-alive connection is closed after this.
    - ``max_connections``: open client connections. At the cap, the oldest connection that is
      idle or has not finished sending its request head is closed to admit the new one; the
      effective cap is also at most half the process's open-file limit (each client connection
      may need one upstream connection).

    Bodies:

    - ``max_body``: the largest request body (buffered for the replay) → 413.
    - ``json_peek_bytes``: a 200 JSON response up to this size is read to look for an auth
      failure; a larger one cannot be one and is streamed.
    - ``sse_peek_bytes`` / ``sse_peek_timeout``: how much and how long a POST's SSE response is
      held while looking for its first JSON-RPC message; then it is flushed and streamed.
    """

    connect_timeout: PositiveSeconds = 10.0
    response_timeout: PositiveSeconds = 60.0
    read_timeout: PositiveSeconds = 60.0
    upstream_connections: Count = 0
    upstream_idle_timeout: PositiveSeconds = 4.0
    header_timeout: PositiveSeconds = 60.0
    body_timeout: PositiveSeconds = 60.0
    keepalive_timeout: PositiveSeconds = 75.0
    max_connections: PositiveCount = 1024
    max_body: PositiveCount = 1 << 20
    json_peek_bytes: PositiveCount = 64 * 1024
    sse_peek_bytes: PositiveCount = 64 * 1024
    sse_peek_timeout: PositiveSeconds = 10.0
