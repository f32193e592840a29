"""Serve an aiohttp application on loopback with an optional TLS context."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["LoopbackSite", "is_loopback_host", "reset_connection"]


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` (with or without brackets)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reset_connection(request: web.BaseRequest) -> None:
    """Drop the request's connection with a TCP reset (what a "reset" fault means to a client)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER with a zero timeout turns the close into a TCP RST: the client sees a reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class LoopbackSite:
    """An aiohttp app bound to a loopback address (port 0 picks a free port).

    ``app`` may also be a bare request handler, served without a router or middlewares (what
    a proxy wants on its hot path), or a ready low-level ``web.Server``.
    ``handler_cancellation=True`` cancels a handler whose client disconnected, even while the
    handler is waiting on something else.
    """

    def __init__(
        self,
        app: web.Application | web.Server | Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        shutdown_timeout: float = 0.25,
        handler_cancellation: bool = False,
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError(
                f"refusing to bind {host!r}: freshtoken servers listen on loopback only"
            )
        self._app = app
        self._host = host.strip("[]")
        self._port = port
        self._ssl = ssl_context
        self._shutdown_timeout = shutdown_timeout
        self._handler_cancellation = handler_cancellation
        self._runner: web.BaseRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        scheme = "https" if self._ssl is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        runner: web.BaseRunner
        if isinstance(self._app, web.Application):
            runner = web.AppRunner(
                self._app,
                access_log=None,
                handle_signals=False,
                shutdown_timeout=self._shutdown_timeout,
                handler_cancellation=self._handler_cancellation,
            )
        else:
            server = (
                self._app
                if isinstance(self._app, web.Server)
                else web.Server(
                    self._app, handler_cancellation=self._handler_cancellation, access_log=None
                )
            )
            runner = web.ServerRunner(
                server, handle_signals=False, shutdown_timeout=self._shutdown_timeout
            )
        await runner.setup()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.listen(1024)
            sock.setblocking(False)
            await web.SockSite(runner, sock, ssl_context=self._ssl).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.port = sock.getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
