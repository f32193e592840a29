"""``freshtoken_credentials``: direct credentials for a client that refreshes its own tokens.

Through ``freshtoken_mcp_url`` the proxy holds the token, so a client that bakes its bearer
passes there; with direct credentials the same client meets the rotation itself and fails.
"""

from __future__ import annotations

import pytest
from downstream_client import SOURCE as CLIENT_SOURCE

SUITE = """
import httpx
import pytest
from mcp_calls import Baked, Refreshing, Session


@pytest.fixture
def http():
    with httpx.Client() as client:
        yield client


def test_baked_bearer_through_the_proxy(http, freshtoken_mcp_url, freshtoken_auth_server):
    # The proxy strips and replaces the bearer: a baked one cannot be noticed here.
    client = Session(freshtoken_mcp_url, token="baked-and-ignored")
    client.initialize(http)
    freshtoken_auth_server.rotate()
    assert client.call(http)[0] == 200


def test_baked_bearer_with_direct_credentials(http, freshtoken_credentials, freshtoken_auth_server):
    client = Baked(freshtoken_credentials)
    client.initialize(http)
    freshtoken_auth_server.rotate()
    assert client.call(http)[0] == 200


def test_refreshing_client_with_direct_credentials(http, freshtoken_credentials,
                                                   freshtoken_auth_server):
    client = Refreshing(freshtoken_credentials)
    client.initialize(http)
    for _ in range(3):
        freshtoken_auth_server.rotate()
        assert client.call(http, "whoami", {})[0] == 200
    assert len(freshtoken_auth_server.token_requests_seen("refresh_token")) == 3
"""


def test_a_baked_bearer_fails_only_with_direct_credentials(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(mcp_calls=CLIENT_SOURCE, test_clients=SUITE)
    result = pytester.runpytest("-p", "no:asyncio")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       assert 401 == 200",
            "*- freshtoken timeline -*",
            "*auth.rejected*",
            "FAILED test_clients.py::test_baked_bearer_with_direct_credentials*",
        ]
    )


def test_what_the_credentials_carry(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        """
        import ssl

        import httpx
        import pytest
        from freshtoken import fingerprint
        from freshtoken.plugin import Credentials

        def test_fields(freshtoken_credentials, freshtoken_mcp_server, freshtoken_auth_server,
                        freshtoken_clock):
            c = freshtoken_credentials
            assert isinstance(c, Credentials)
            assert c.mcp_url == c.resource == freshtoken_mcp_server.url
            assert c.token_endpoint == freshtoken_auth_server.token_endpoint
            assert c.issuer == freshtoken_auth_server.issuer
            assert (c.client_id, c.client_secret) == (freshtoken_auth_server.client_id,
                                                      freshtoken_auth_server.client_secret)
            assert c.scope == "mcp" and c.expires_in == 3600
            assert c.expires_at == freshtoken_clock.time() + 3600
            assert c.ca_path is None
            info = freshtoken_auth_server.validate_access_token(c.access_token)
            assert info is not None and info.resource == c.resource
            # Secrets never show in a repr (pytest prints fixture values on failure).
            text = repr(c)
            for secret in (c.access_token, c.refresh_token, c.client_secret):
                assert secret not in text
            assert fingerprint(c.access_token) in text

        def test_a_grant_of_its_own(freshtoken_credentials, freshtoken_mcp_url,
                                    freshtoken_auth_server, freshtoken_proxy):
            # Refreshing the direct grant (with rotation and reuse detection) leaves the
            # proxy's grant alone: the proxy then refreshes its own refresh token, unrevoked.
            c = freshtoken_credentials
            response = httpx.post(c.token_endpoint, auth=(c.client_id, c.client_secret),
                                  data={"grant_type": "refresh_token",
                                        "refresh_token": c.refresh_token})
            assert response.status_code == 200
            freshtoken_proxy.refresh("mcp").result()
            seen = freshtoken_auth_server.token_requests_seen("refresh_token")
            assert [s.status for s in seen] == [200, 200]
            assert seen[0].refresh_token != seen[1].refresh_token
            body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                               "clientInfo": {"name": "t", "version": "1"}}}
            answer = httpx.post(freshtoken_mcp_url, json=body,
                                headers={"Accept": "application/json, text/event-stream"})
            assert answer.status_code == 200

        @pytest.mark.freshtoken(tls=True, report_expires_in=False)
        def test_tls_and_no_reported_lifetime(freshtoken_credentials, freshtoken_ca):
            c = freshtoken_credentials
            assert c.ca_path == freshtoken_ca.ca_path and c.mcp_url.startswith("https://")
            assert (c.expires_in, c.expires_at) == (None, None)
            context = ssl.create_default_context(cafile=str(c.ca_path))
            response = httpx.post(c.token_endpoint, verify=context,
                                  auth=(c.client_id, c.client_secret),
                                  data={"grant_type": "refresh_token",
                                        "refresh_token": c.refresh_token})
            assert response.status_code == 200
        """
    )
    pytester.runpytest("-p", "no:asyncio").assert_outcomes(passed=3)
