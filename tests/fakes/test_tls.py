from __future__ import annotations

import ssl

import aiohttp
from aiohttp import web

from freshtoken._serve import LoopbackSite
from freshtoken.fakes import FakeCA


async def test_a_loopback_site_serves_https_trusted_by_the_ca_file_and_context() -> None:
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    with FakeCA() as ca:
        site = LoopbackSite(app, ssl_context=ca.server_ssl_context())
        await site.start()
        try:
            assert site.url.startswith("https://127.0.0.1:")
            from_file = ssl.create_default_context(cafile=str(ca.ca_path))
            for ctx in (from_file, ca.client_ssl_context()):
                async with aiohttp.ClientSession() as session, session.get(site.url, ssl=ctx) as r:
                    assert await r.text() == "hello"
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.get(site.url) as r:
                        raise AssertionError("untrusted certificate was accepted")
                except aiohttp.ClientConnectorCertificateError:
                    pass
        finally:
            await site.stop()
        ca_path = ca.ca_path
    assert not ca_path.exists()


def test_refuses_a_non_loopback_bind() -> None:
    import pytest

    with pytest.raises(ValueError, match="loopback only"):
        LoopbackSite(web.Application(), host="0.0.0.0")
