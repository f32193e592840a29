"""What each timeline event is in a diagram: the label, lanes and tokens of its row (or none,
when another row already shows the same hop from the other end)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from freshtoken._timeline import Event

if TYPE_CHECKING:
    from freshtoken.scenarios._translate import Translator

__all__ = ["HANDLERS"]


def _call_label(rpc_method: Any, tool: Any, http_method: Any = None) -> str:
    label = str(rpc_method) if rpc_method else ""
    if tool:
        label = f"{label} {tool}".strip()
    if http_method and http_method != "POST":
        label = f"{http_method} {label}".strip() if label else f"{http_method} (SSE stream)"
    return label or "request"


def _response_label(event: Event) -> str:
    mode = event.detail.get("mode")
    status = "" if event.status is None else str(event.status)
    return f"{status} SSE".strip() if mode == "sse" else (status or "response")


# -- the event table ---------------------------------------------------------------------------


def _client_send(t: Translator, e: Event) -> None:
    s = t.state
    if not s.has_proxy and s.has_mcp:
        # Without a proxy this hop is the one the MCP server records, with more detail.
        return
    method = e.detail.get("method")
    tool = s.tools.get(e.request_id or "") if method == "tools/call" else None
    key = (e.request_id, str(method))
    retry = e.request_id is not None and key in s.seen_calls
    s.seen_calls.add(key)
    verb = isinstance(method, str) and method.isupper()
    label = _call_label(None, None, method) if verb else _call_label(method, tool)
    t.arrow(
        e,
        "client",
        s.client_hop,
        f"retry: {label}" if retry else label,
        tag="replay" if retry else "request",
        check_stale=True,
    )


def _client_call_start(t: Translator, e: Event) -> None:
    if e.request_id is not None:
        t.state.tools[e.request_id] = str(e.detail.get("tool", ""))


def _proxy_request(t: Translator, e: Event) -> None:
    if not t.state.has_client_sends:
        label = _call_label(e.detail.get("rpc_method"), None, e.detail.get("method"))
        t.arrow(e, "client", "proxy", label, tag="request")


def _proxy_upstream_send(t: Translator, e: Event) -> None:
    replay = int(e.detail.get("attempt", 1) or 1) > 1
    if replay:
        t.state.pending_replays[e.token] = t.state.pending_replays.get(e.token, 0) + 1
    if not t.state.has_mcp:
        t.arrow(
            e,
            "proxy",
            "mcp",
            "replay" if replay else "request",
            tag="replay" if replay else "request",
            check_stale=True,
        )


def _proxy_upstream_response(t: Translator, e: Event) -> None:
    if not t.state.has_mcp:
        t.arrow(e, "mcp", "proxy", _response_label(e), tag=_status_tag(e.status))


def _status_tag(status: int | None) -> str:
    return "error" if status is not None and status >= 400 else "response"


def _mcp_request(t: Translator, e: Event) -> None:
    s = t.state
    rpc = e.detail.get("rpc_method")
    label = _call_label(rpc, e.detail.get("tool"), e.detail.get("http_method"))
    # A JSON-RPC request replayed keeps its id; what has none (a GET stream) is matched to the
    # proxy's own record of replaying with that token.
    key = (e.request_id, f"{e.detail.get('http_method')} {rpc} {e.detail.get('session')}")
    if e.request_id is not None:
        replay = key in s.seen_calls
        s.seen_calls.add(key)
    else:
        replay = s.pending_replays.get(e.token, 0) > 0
        if replay:
            s.pending_replays[e.token] -= 1
    t.arrow(
        e,
        s.upstream_caller,
        "mcp",
        f"replay: {label}" if replay else label,
        tag="replay" if replay else "request",
        check_stale=True,
    )


def _mcp_response(t: Translator, e: Event) -> None:
    t.arrow(e, "mcp", t.state.upstream_caller, _response_label(e), tag=_status_tag(e.status))


def _mcp_sse_event(t: Translator, e: Event) -> None:
    stream = str(e.detail.get("stream", "?"))
    if e.request_id is None:
        t.state.get_stream = stream
    t.arrow(e, "mcp", t.state.upstream_caller, "SSE event", tag="sse", stream=stream)


def _client_sse_event(t: Translator, e: Event) -> None:
    if t.state.has_proxy:
        stream = t.state.streams_by_request.get(e.request_id or "", "?")
        t.arrow(e, "proxy", "client", "SSE event", tag="sse", stream=stream)


def _as_token_request(t: Translator, e: Event) -> None:
    s = t.state
    grant = str(e.detail.get("grant_type", "?"))
    if s.runner_refresh is not None:
        tokens: tuple[str | None, ...] = (s.runner_refresh,)
        label, tag, origin = f"replayed {grant} grant (a stale copy)", "replay", "client"
        s.runner_refresh = None
    else:
        origin = s.upstream_caller if grant == "refresh_token" else "client"
        # A client that refreshes itself said which refresh token it presents; the proxy
        # does not, and the diagram does not guess.
        presented = s.presented.pop(0) if origin == "client" and s.presented else None
        tokens = (presented,)
        label, tag = f"POST /token {grant}", "refresh" if grant == "refresh_token" else "request"
    s.token_origin = origin
    t.arrow(e, origin, "as", label, tag=tag, tokens=tokens, check_stale=True)
    if e.status is None or e.status >= 500:
        t.arrow(e, "as", origin, f"{e.status or 'connection dropped'}", tag="error", tokens=())


def _as_token_issued(t: Translator, e: Event) -> None:
    s = t.state
    refresh = e.detail.get("refresh")
    family = str(e.detail.get("family", ""))
    if e.token:
        s.access.add(e.token)
        s.families.setdefault(family, set()).add(e.token)
        expires_at = e.detail.get("expires_at")
        if isinstance(expires_at, int | float):
            s.expires[e.token] = float(expires_at)
    if refresh:
        s.families.setdefault(family, set()).add(str(refresh))
    tokens = (e.token, str(refresh) if refresh else None)
    grant = e.detail.get("grant_type")
    if grant == "seed":
        t.mark(e, "as", "seeded tokens", tag="refresh", tokens=tokens)
    else:
        t.arrow(e, "as", s.token_origin, f"200 new tokens ({grant})", tag="refresh", tokens=tokens)


def _as_token_refused(t: Translator, e: Event) -> None:
    label = f"{e.status} {e.detail.get('error', 'refused')}"
    t.arrow(e, "as", t.state.token_origin, label, tag="error", tokens=())


def _as_refresh_rotated(t: Translator, e: Event) -> None:
    successor = e.detail.get("successor")
    if e.token:
        t.state.dead.add(e.token)
    t.mark(e, "as", "refresh token rotated", tag="refresh", tokens=(e.token, successor))


def _as_tokens_rotated(t: Translator, e: Event) -> None:
    t.state.dead |= t.state.access
    t.span(e, "rotation: every access token issued so far is invalid", tag="rotation", tokens=())


def _as_token_expired(t: Translator, e: Event) -> None:
    if e.token:
        t.state.dead.add(e.token)
        t.state.expired_shown.add(e.token)
    t.span(e, f"expiry: {e.detail.get('type', '')} token expired now", tag="expiry")


def _as_revoked(t: Translator, e: Event) -> None:
    if e.kind == "family.revoked":
        t.state.dead |= t.state.families.get(str(e.detail.get("family", "")), set())
        label = f"revocation: token family revoked ({e.detail.get('reason', '')})"
        t.span(e, label, tag="revocation", tokens=())
    else:
        if e.token:
            t.state.dead.add(e.token)
        t.span(e, f"revocation: {e.detail.get('type', '')} token revoked", tag="revocation")


def _as_reuse(t: Translator, e: Event) -> None:
    t.mark(e, "as", "refresh token reuse detected", tag="error", check_stale=True)


def _as_fault(t: Translator, e: Event) -> None:
    what = e.detail.get("what", "")
    t.span(e, f"fault at the token endpoint: {what} {e.status or ''}".strip(), tag="fault")


def _mcp_fault(t: Translator, e: Event) -> None:
    extra = " ".join(str(e.detail[k]) for k in ("mode", "scope") if e.detail.get(k))
    t.span(
        e, f"fault injected: {e.detail.get('action', '?')} {extra}".strip(), tag="fault", tokens=()
    )


def _mcp_rejected(t: Translator, e: Event) -> None:
    label = f"bearer rejected ({e.detail.get('style', e.status)})"
    t.mark(e, "mcp", label, tag="error", check_stale=True)


def _simple_mark(lane: str, label: str, tag: str = "info") -> Any:
    def handle(t: Translator, e: Event) -> None:
        t.mark(e, lane, label, tag=tag, tokens=())

    return handle


def _skip(_t: Translator, _e: Event) -> None:
    """Events another row already shows (the same hop seen from the other end)."""


def _proxy_auth_failure(t: Translator, e: Event) -> None:
    t.mark(
        e, "proxy", f"auth failure ({e.detail.get('reason', '')})", tag="error", check_stale=True
    )


def _proxy_refresh_failed(t: Translator, e: Event) -> None:
    terminal = " (terminal)" if e.detail.get("terminal") else ""
    t.mark(e, "proxy", f"refresh failed{terminal}", tag="error", tokens=())


def _client_result(t: Translator, e: Event) -> None:
    if e.kind == "call.result":
        t.mark(e, "client", "result", tag="ok", tokens=())
    else:
        t.mark(e, "client", f"error: {e.detail.get('error', e.status)}", tag="error", tokens=())


def _client_get(t: Translator, e: Event) -> None:
    last = e.detail.get("last_event_id")
    if e.kind == "stream.resume":
        t.mark(e, "client", f"resume after event {last}", tag="replay", tokens=())
    elif e.kind == "get.open":
        t.mark(e, "client", "GET stream open", tag="sse", tokens=())
    else:
        label = e.kind.replace(".", " ")
        t.mark(e, "client", label, tag="error" if "cut" in e.kind else "info", tokens=())


def _runner_replay(t: Translator, e: Event) -> None:
    t.state.runner_refresh = e.token


def _client_refresh_request(t: Translator, e: Event) -> None:
    if e.token:
        t.state.presented.append(e.token)


def _client_get_event(t: Translator, e: Event) -> None:
    if t.state.has_proxy:
        t.arrow(e, "proxy", "client", "SSE event", tag="sse", stream=t.state.get_stream, tokens=())


def _command(t: Translator, e: Event) -> None:
    if e.kind == "command.start":
        t.mark(e, "client", f"command started ({e.detail.get('argv0', '')})", tokens=())
    elif e.kind == "command.exit":
        tag = "error" if e.status else "ok"
        t.mark(e, "client", f"command exited ({e.status})", tag=tag, tokens=())
    elif e.kind == "command.output":
        t.mark(e, "client", f"output: {e.detail.get('last_line', '')}", tag="error", tokens=())
    else:
        t.span(e, f"timeout: the command ran past {e.detail.get('timeout', '?')} s", tag="error")


def _runner_timeout(t: Translator, e: Event) -> None:
    what = e.detail.get("what") or e.detail.get("event") or ""
    t.span(e, f"timeout: {what}", tag="error")


HANDLERS: dict[tuple[str, str], Any] = {
    ("client", "send"): _client_send,
    ("client", "call.start"): _client_call_start,
    ("client", "call.result"): _client_result,
    ("client", "call.error"): _client_result,
    ("client", "call.abandoned"): _simple_mark("client", "call abandoned", "error"),
    ("client", "initialized"): _simple_mark("client", "initialized"),
    ("client", "sse.event"): _client_sse_event,
    ("client", "get.open"): _client_get,
    ("client", "get.closed"): _client_get,
    ("client", "stream.cut"): _client_get,
    ("client", "stream.resume"): _client_get,
    ("client", "refresh.request"): _client_refresh_request,
    ("client", "refresh.done"): _skip,
    ("client", "refresh.failed"): _simple_mark("client", "refresh failed", "error"),
    ("client", "retry"): _skip,
    ("client", "get.event"): _client_get_event,
    ("client", "command.start"): _command,
    ("client", "command.exit"): _command,
    ("client", "command.output"): _command,
    ("client", "command.timeout"): _command,
    ("client", "session.expired"): _simple_mark("client", "session expired", "error"),
    ("proxy", "request"): _proxy_request,
    ("proxy", "upstream.send"): _proxy_upstream_send,
    ("proxy", "upstream.response"): _proxy_upstream_response,
    ("proxy", "response"): lambda t, e: t.arrow(
        e, "proxy", "client", _response_label(e), tag=_status_tag(e.status), tokens=()
    ),
    ("proxy", "auth.failure"): _proxy_auth_failure,
    ("proxy", "replay"): _skip,
    ("proxy", "refresh.start"): _skip,
    ("proxy", "refresh.done"): _skip,
    ("proxy", "refresh.rotated"): _skip,
    ("proxy", "refresh.failed"): _proxy_refresh_failed,
    ("proxy", "refresh.retry"): _simple_mark("proxy", "refresh retry", "refresh"),
    ("proxy", "token.unavailable"): _simple_mark("proxy", "no token available", "error"),
    ("proxy", "stream.end"): lambda t, e: t.mark(
        e, "proxy", f"stream end ({e.detail.get('reason', '')})", tag="sse", tokens=()
    ),
    ("mcp", "request"): _mcp_request,
    ("mcp", "response"): _mcp_response,
    ("mcp", "auth.rejected"): _mcp_rejected,
    ("mcp", "sse.event"): _mcp_sse_event,
    ("mcp", "sse.cut"): lambda t, e: t.mark(
        e,
        "mcp",
        f"stream cut ({e.detail.get('mode', '')})",
        tag="fault",
        tokens=(),
        stream=str(e.detail.get("stream", "?")),
    ),
    ("mcp", "fault"): _mcp_fault,
    ("mcp", "session.created"): _simple_mark("mcp", "session created"),
    ("mcp", "session.dropped"): lambda t, e: t.span(e, "restart: sessions dropped", tag="fault"),
    ("mcp", "stream.cancelled"): _simple_mark("mcp", "stream cancelled"),
    ("as", "client.registered"): _skip,
    ("as", "token.request"): _as_token_request,
    ("as", "token.issued"): _as_token_issued,
    ("as", "token.refused"): _as_token_refused,
    ("as", "refresh.rotated"): _as_refresh_rotated,
    ("as", "tokens.rotated"): _as_tokens_rotated,
    ("as", "token.expired"): _as_token_expired,
    ("as", "token.revoked"): _as_revoked,
    ("as", "family.revoked"): _as_revoked,
    ("as", "refresh.reuse"): _as_reuse,
    ("as", "fault"): _as_fault,
    ("runner", "refresh.replay"): _runner_replay,
    ("runner", "step.timeout"): _runner_timeout,
    ("runner", "wait.timeout"): _runner_timeout,
}
