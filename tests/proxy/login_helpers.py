"""Servers and browsers for the login tests.

:class:`ResourceServer` is a protected resource that publishes its RFC 9728 metadata where a
test says (the challenge, the path-suffixed or the root well-known path, or nowhere) and can
lie in it; it records every request. The authorization server behind it is the real fake AS.
The browsers stand in for a person: one follows redirects but tampers with the redirect back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from aiohttp import web

from freshtoken._serve import LoopbackSite

PRM = "/.well-known/oauth-protected-resource"


@dataclass
class ResourceServer:
    """A stand-in MCP server for discovery: 401 without a token, metadata where configured."""

    authorization_server: str
    prm_paths: tuple[str, ...] = ("header", "suffixed")
    """Where the metadata is: ``header`` (named in the challenge), ``suffixed``, ``root``."""
    resource: str | None = None
    """The metadata's ``resource`` (default: this server's MCP URL)."""
    challenge_scope: str | None = None
    scopes_supported: list[str] | None = None
    status: int = 401
    as_metadata: dict[str, Any] | None = None
    """Also act as the authorization server: serve this RFC 8414 document (its ``issuer`` and
    endpoints filled in) and refuse every registration."""
    seen: list[str] = field(default_factory=list)
    url: str = ""
    _site: LoopbackSite | None = None

    async def __aenter__(self) -> ResourceServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._site = LoopbackSite(app)
        await self._site.start()
        self.url = f"{self._site.url}/mcp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._site is not None
        await self._site.stop()

    @property
    def base(self) -> str:
        assert self._site is not None
        return self._site.url

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(f"{request.method} {request.path}")
        if request.path == "/mcp":
            params = []
            if "header" in self.prm_paths:
                params.append(f'resource_metadata="{self.base}/custom/prm.json"')
            if self.challenge_scope:
                params.append(f'scope="{self.challenge_scope}"')
            challenge = "Bearer " + ", ".join(params) if params else "Bearer"
            return web.json_response(
                {"error": "invalid_token"},
                status=self.status,
                headers={"WWW-Authenticate": challenge} if self.status == 401 else {},
            )
        if self.as_metadata is not None:
            if request.path == "/.well-known/oauth-authorization-server":
                return web.json_response(
                    {
                        "issuer": self.base,
                        "authorization_endpoint": f"{self.base}/authorize",
                        "token_endpoint": f"{self.base}/token",
                        "code_challenge_methods_supported": ["S256"],
                        **self.as_metadata,
                    }
                )
            if request.path == "/register":
                return web.json_response(
                    {
                        "error": "invalid_client_metadata",
                        "error_description": "registration closed",
                    },
                    status=400,
                )
        served = {
            "/custom/prm.json": "header",
            f"{PRM}/mcp": "suffixed",
            PRM: "root",
        }.get(request.path)
        if served is None or served not in self.prm_paths:
            return web.json_response({"error": "not_found"}, status=404)
        document: dict[str, Any] = {
            "resource": self.resource or self.url,
            "authorization_servers": [self.authorization_server],
        }
        if self.scopes_supported is not None:
            document["scopes_supported"] = self.scopes_supported
        return web.json_response(document)


def tampering_browser(
    tamper: Callable[[dict[str, str]], dict[str, str]],
    *,
    verify: Any = True,
) -> Callable[[str], Any]:
    """A browser that approves at the authorization server, then alters the redirect back
    (``tamper`` gets and returns its query parameters) before delivering it."""

    async def open_url(url: str) -> None:
        async with httpx.AsyncClient(verify=verify) as http:
            response = await http.get(url)
            assert response.status_code == 302, response.text
            location = urlsplit(response.headers["Location"])
            params = tamper(dict(parse_qsl(location.query)))
            back = urlunsplit(location._replace(query=urlencode(params)))
            await http.get(back)

    return open_url
