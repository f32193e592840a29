"""``freshtoken login`` against a hostile network: hangs, drips, floods, garbage and cuts.

Every wait is bounded (a request by ``deadline``, the redirect by ``redirect_timeout``), a
document is read up to a cap, garbage is skipped, and a code exchange whose answer was lost is
never re-sent. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web

from freshtoken._serve import LoopbackSite
from freshtoken.fakes import FakeAuthorizationServer, FakeMCPServer
from freshtoken.proxy import LoginError, LoginFailure, LoginTarget, login


class Hostile:
    """An MCP server whose protected-resource metadata misbehaves in one way."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.release = asyncio.Event()
        self.seen: list[str] = []
        self.url = ""
        self._site: LoopbackSite | None = None

    async def __aenter__(self) -> Hostile:
        self._site = LoopbackSite(self._handle)
        await self._site.start()
        self.url = f"{self._site.url}/mcp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._site is not None
        await self._site.stop()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.seen.append(request.path)
        if request.path == "/mcp":
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if self.behaviour == "hang":
            await self.release.wait()
            return web.Response(status=504)
        if self.behaviour == "garbage":
            return web.Response(body=b"\x00\xff{not json", content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if self.behaviour == "drip":
            for _ in range(200):  # bounded: far longer than the deadline, never endless
                await response.write(b" ")
                await asyncio.sleep(0.05)
        elif self.behaviour == "flood":
            chunk = b" " * 65536
            for _ in range(64):  # 4 MiB, well over the cap
                await response.write(chunk)
        return response


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("hang", "within 0.5 s"),
        ("drip", "within 0.5 s"),
        ("flood", "larger than 262144 bytes"),
        ("garbage", "not a JSON object"),
    ],
)
async def test_misbehaving_metadata_is_bounded_and_skipped(
    tmp_path: Path, behaviour: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="freshtoken.login")
    async with Hostile(behaviour) as server:
        with pytest.raises(LoginError) as info:
            await login(
                LoginTarget(url=server.url, store=tmp_path / "s.json", deadline=0.5),
                mode="headless",
            )
    # Each well-known location was tried once, then the 2025-03-26 fallback (the server's
    # origin as the authorization server, its default registration endpoint), then one line.
    assert server.seen == [
        "/mcp",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/register",
    ]
    assert info.value.failure is LoginFailure.NO_AUTHORIZATION_SERVER
    assert "\n" not in str(info.value)
    assert reason in caplog.text
    assert not (tmp_path / "s.json").exists()


async def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    site = LoopbackSite(lambda request: None)  # type: ignore[arg-type,return-value]
    await site.start()
    url = f"{site.url}/mcp"
    await site.stop()  # nothing listens there any more
    with pytest.raises(LoginError, match=r"cannot reach the MCP server: .*ConnectError") as info:
        await login(LoginTarget(url=url, store=tmp_path / "s.json"), mode="headless")
    assert info.value.failure is LoginFailure.FAILED


async def test_the_listener_survives_junk_before_the_redirect(tmp_path: Path) -> None:
    async def browser_after_a_flood(url: str) -> None:
        listener = urlsplit(httpx.URL(url).params["redirect_uri"])
        base = f"{listener.scheme}://{listener.netloc}"
        async with httpx.AsyncClient() as http:
            statuses = [
                (await http.get(f"{base}/")).status_code,
                (await http.post(f"{base}/callback", content=b"x" * 1000)).status_code,
                (await http.get(f"{base}/favicon.ico")).status_code,
            ]
            assert statuses == [404, 404, 404]
            for _ in range(3):  # raw garbage on new connections
                reader, writer = await asyncio.open_connection(listener.hostname, listener.port)
                writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
                await writer.drain()
                await reader.read()
                writer.close()
            response = await http.get(url, follow_redirects=True)
            assert response.status_code == 200

    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        await login(
            LoginTarget(url=mcp.url, store=tmp_path / "s.json"),
            open_url=browser_after_a_flood,
            redirect_timeout=20,
        )
        stored = json.loads((tmp_path / "s.json").read_text())
        assert auth.validate_access_token(stored["access_token"]) is not None
        assert auth.authorizations_seen() == 1


async def test_a_code_exchange_whose_answer_is_lost_is_never_resent(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        auth.fail_next(reset=True)  # the exchange is processed, then the connection drops
        with pytest.raises(LoginError, match="the answer was lost; log in again") as info:
            await login(LoginTarget(url=mcp.url, store=tmp_path / "s.json"), mode="headless")
        assert info.value.failure is LoginFailure.FAILED
        assert len(auth.token_requests_seen("authorization_code")) == 1
        assert not (tmp_path / "s.json").exists()


async def test_a_code_exchange_refused_with_503_is_retried(tmp_path: Path) -> None:
    async with (
        FakeAuthorizationServer() as auth,
        FakeMCPServer(authorization_server=auth) as mcp,
    ):
        auth.fail_next(1, status=503)  # provably not processed: safe to send again
        await login(LoginTarget(url=mcp.url, store=tmp_path / "s.json"), mode="headless")
        statuses = [r.status for r in auth.token_requests_seen("authorization_code")]
        assert statuses == [503, 200]
