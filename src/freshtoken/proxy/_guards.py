"""Who may use the proxy and where a bearer may go: loopback Host and Origin, target paths."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from freshtoken._serve import is_loopback_host

__all__ = ["authority_is_loopback", "escapes", "origin_is_loopback", "under_prefix"]


def authority_is_loopback(authority: str) -> bool:
    """Whether a ``Host`` value names a loopback host; False for anything malformed."""
    port = ""
    if authority.startswith("["):
        host, closed, rest = authority[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return False
        port = rest[1:]
    elif authority.count(":") == 1:
        host, _, port = authority.partition(":")
    else:
        host = authority  # a bare IPv6 address, or a name without a port
    if port and not port.isdigit():
        return False
    return is_loopback_host(host)


def origin_is_loopback(origin: str) -> bool:
    """Whether an ``Origin`` value is an http(s) origin on a loopback host; False if malformed."""
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and hostname is not None and is_loopback_host(hostname)


def escapes(path: str) -> bool:
    """Whether ``path`` (raw, percent-encoded) has a segment that a server could resolve upward:
    ``.`` or ``..`` (also percent-encoded), or an encoded ``/`` or ``\\`` inside a segment."""
    if "." not in path and "%" not in path and "\\" not in path:
        return False
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            return True
    return False


def under_prefix(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it (``prefix`` without a trailing slash)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")
