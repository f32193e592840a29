"""The fixtures in every shape a downstream suite takes: sync tests, pytest-asyncio (strict and
auto, function, module and session loop scopes), anyio on asyncio and trio (with and without
pytest-asyncio loaded), and pytest-xdist.

Each suite rotates a token through the proxy (with the built-in client and with the suite's own
client on its own loop), refreshes through a direct credential with its own client, and awaits
a control that runs on the fixtures' loop.
"""

from __future__ import annotations

import pytest
from downstream_client import SOURCE as CLIENT_SOURCE
from plugin_helpers import write_ini

SYNC_SUITE = """
import httpx
from freshtoken.fakes import Fault, Match, Status401
from mcp_calls import Refreshing, Session


def test_own_client_through_the_proxy(freshtoken_mcp_url, freshtoken_auth_server, freshtoken_faults):
    client = Session(freshtoken_mcp_url)
    with httpx.Client() as http:
        client.initialize(http)
        freshtoken_auth_server.rotate()
        assert client.call(http)[0] == 200
        freshtoken_faults.add(Fault(Match(tool="add"), Status401()))
        status, result = client.call(http, "add", {"a": 2, "b": 3})
    assert (status, result["content"][0]["text"]) == (200, "5")
    assert len(freshtoken_auth_server.token_requests_seen("refresh_token")) == 2


def test_direct_credentials(freshtoken_credentials, freshtoken_auth_server, freshtoken_clock):
    client = Refreshing(freshtoken_credentials)
    with httpx.Client() as http:
        client.initialize(http)
        freshtoken_clock.advance(freshtoken_credentials.expires_in + 1)
        assert client.call(http)[0] == 200
    assert len(freshtoken_auth_server.token_requests_seen("refresh_token")) == 1


def test_a_control_from_sync_code(freshtoken_proxy, freshtoken_auth_server):
    freshtoken_proxy.refresh("mcp").result()
    assert freshtoken_auth_server.token_requests == 1
"""

ASYNCIO_SUITE = """
import httpx
import pytest
import pytest_asyncio
from mcp_calls import Refreshing, Session

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def test_built_in_client(freshtoken_client, freshtoken_auth_server):
    assert (await freshtoken_client.call("echo", {"text": "before"})).ok
    freshtoken_auth_server.rotate()
    assert (await freshtoken_client.call("echo", {"text": "after"})).ok
    assert freshtoken_auth_server.token_requests == 1


async def test_own_client_through_the_proxy(http, freshtoken_mcp_url, freshtoken_auth_server):
    client = Session(freshtoken_mcp_url)
    await client.ainitialize(http)
    freshtoken_auth_server.rotate()
    assert (await client.acall(http))[0] == 200
    assert freshtoken_auth_server.token_requests == 1


async def test_direct_credentials(http, freshtoken_credentials, freshtoken_auth_server):
    client = Refreshing(freshtoken_credentials)
    await client.ainitialize(http)
    freshtoken_auth_server.rotate()
    assert (await client.acall(http))[0] == 200
    assert len(freshtoken_auth_server.token_requests_seen("refresh_token")) == 1


async def test_awaited_control(freshtoken_proxy, freshtoken_auth_server):
    await freshtoken_proxy.refresh("mcp")
    assert freshtoken_auth_server.token_requests == 1
"""

ANYIO_SUITE = """
import httpx
import pytest
from mcp_calls import Refreshing, Session

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def anyio_backend(request):
    return request.param


async def test_built_in_client(anyio_backend, freshtoken_client, freshtoken_auth_server):
    import sniffio

    assert sniffio.current_async_library() == anyio_backend
    assert (await freshtoken_client.call("echo", {"text": "before"})).ok
    freshtoken_auth_server.rotate()
    assert (await freshtoken_client.call("echo", {"text": "after"})).ok
    assert freshtoken_auth_server.token_requests == 1


async def test_own_client_through_the_proxy(freshtoken_mcp_url, freshtoken_auth_server):
    client = Session(freshtoken_mcp_url)
    async with httpx.AsyncClient() as http:
        await client.ainitialize(http)
        freshtoken_auth_server.rotate()
        assert (await client.acall(http))[0] == 200
    assert freshtoken_auth_server.token_requests == 1


async def test_direct_credentials(freshtoken_credentials, freshtoken_auth_server):
    client = Refreshing(freshtoken_credentials)
    async with httpx.AsyncClient() as http:
        await client.ainitialize(http)
        freshtoken_auth_server.rotate()
        assert (await client.acall(http))[0] == 200
    assert len(freshtoken_auth_server.token_requests_seen("refresh_token")) == 1


async def test_awaited_control(freshtoken_proxy, freshtoken_auth_server):
    await freshtoken_proxy.refresh("mcp")
    assert freshtoken_auth_server.token_requests == 1
"""


def _project(pytester: pytest.Pytester, **modules: str) -> None:
    pytester.makepyfile(mcp_calls=CLIENT_SOURCE, **modules)


def test_sync_tests(pytester: pytest.Pytester) -> None:
    write_ini(pytester, mode="strict")
    _project(pytester, test_sync=SYNC_SUITE)
    pytester.runpytest().assert_outcomes(passed=3)


def test_sync_tests_without_any_async_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    _project(pytester, test_sync=SYNC_SUITE)
    pytester.runpytest("-p", "no:asyncio", "-p", "no:anyio").assert_outcomes(passed=3)


@pytest.mark.parametrize("mode", ["strict", "auto"])
@pytest.mark.parametrize("scope", ["function", "module", "session"])
def test_pytest_asyncio(pytester: pytest.Pytester, mode: str, scope: str) -> None:
    pytester.makeini(
        "[pytest]\n"
        f"asyncio_mode = {mode}\n"
        f"asyncio_default_fixture_loop_scope = {scope}\n"
        f"asyncio_default_test_loop_scope = {scope}\n"
        "filterwarnings = error\n"
    )
    # Two modules: a module or session loop outlives one module's tests.
    _project(pytester, test_one=ASYNCIO_SUITE, test_two=ASYNCIO_SUITE)
    result = pytester.runpytest()
    result.stdout.fnmatch_lines([f"asyncio: mode=Mode.{mode.upper()}*"])
    result.assert_outcomes(passed=8)


@pytest.mark.parametrize(
    ("plugins", "mode", "backends"),
    [
        (("-p", "no:asyncio"), None, ["asyncio", "trio"]),
        ((), "strict", ["asyncio", "trio"]),
        # pytest-asyncio in auto mode runs every coroutine test on its own loop, anyio's too
        # (anyio's documentation says to use strict mode then): asyncio is what runs there.
        ((), "auto", ["asyncio"]),
    ],
    ids=["anyio-alone", "anyio-with-pytest-asyncio-strict", "anyio-with-pytest-asyncio-auto"],
)
def test_anyio(
    pytester: pytest.Pytester, plugins: tuple[str, ...], mode: str | None, backends: list[str]
) -> None:
    ini = "[pytest]\nfilterwarnings = error\n"
    if mode is not None:
        ini += f"asyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
    pytester.makeini(ini)
    _project(pytester, test_anyio=f"BACKENDS = {backends!r}\n" + ANYIO_SUITE)
    result = pytester.runpytest(*plugins, "-v")
    for backend in backends:
        result.stdout.fnmatch_lines([f"*test_built_in_client?{backend}? PASSED*"])
    result.assert_outcomes(passed=4 * len(backends))


def test_strict_mode_without_asyncio_marker_is_not_silently_passed(
    pytester: pytest.Pytester,
) -> None:
    # Strict mode leaves unmarked coroutines alone; the fixtures must not paper over that.
    write_ini(pytester, mode="strict")
    pytester.makepyfile(
        """
        async def test_unmarked(freshtoken_client):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*async def functions are not natively supported*", "FAILED *::test_unmarked*"]
    )


def test_under_xdist(pytester: pytest.Pytester) -> None:
    write_ini(pytester)
    _project(
        pytester,
        test_one=ASYNCIO_SUITE,
        test_two="""
            import pytest

            @pytest.mark.parametrize("n", range(4))
            async def test_many_independent_stacks(n, freshtoken_client, freshtoken_mcp_url,
                                                   freshtoken_auth_server):
                freshtoken_auth_server.rotate()
                assert (await freshtoken_client.call("add", {"a": n, "b": 1})).ok
                assert freshtoken_auth_server.token_requests == 1

            def test_sync_beside_async(freshtoken_credentials):
                assert freshtoken_credentials.refresh_token

            async def test_failure_report_crosses_workers(freshtoken_client):
                await freshtoken_client.call("echo", {"text": "x"})
                assert False
            """,
    )
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--freshtoken-catalogue",
        "-k",
        "not seed-over-tls and (test_ or seed or posthog)",
    )
    result.stdout.fnmatch_lines(["*2 workers [[]12 items[]]*", "*- freshtoken timeline -*"])
    result.assert_outcomes(passed=11, failed=1)
