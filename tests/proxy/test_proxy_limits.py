"""The proxy's Limits value and registration guards."""

from __future__ import annotations

import dataclasses

import pytest

from freshtoken import ConfigError
from freshtoken._schema import parse
from freshtoken.proxy import Limits, Proxy, StaticTokenSource


def test_limits_defaults_follow_nginx() -> None:
    limits = Limits()
    assert (limits.header_timeout, limits.keepalive_timeout, limits.max_body) == (
        60.0,
        75.0,
        1 << 20,
    )
    assert (limits.connect_timeout, limits.response_timeout, limits.read_timeout) == (
        10.0,
        60.0,
        60.0,
    )
    # Shorter than the 5 s idle timeout of Node.js and uvicorn servers.
    assert limits.upstream_idle_timeout < 5


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"response_timeout": 0}, "response_timeout"),
        ({"read_timeout": float("inf")}, "read_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_body": 1.5}, "max_body"),
        ({"upstream_connections": -1}, "upstream_connections"),
        ({"keepalive": 3}, "keepalive"),
    ],
)
def test_limits_refuse_invalid_values_with_the_field_path(
    data: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(Limits, data, source="proxy.toml", prefix="limits")
    assert info.value.field == f"limits.{field}"


def test_limits_are_frozen() -> None:
    limits = Limits(read_timeout=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.read_timeout = 1  # type: ignore[misc]


async def test_plain_http_upstream_off_loopback_is_refused_unless_allowed() -> None:
    async with Proxy() as proxy:
        with pytest.raises(ValueError, match="plain http"):
            proxy.register("far", "http://mcp.example.com/mcp", StaticTokenSource("t"))
        assert "far" not in proxy.targets
        proxy.register(
            "far", "http://mcp.example.com/mcp", StaticTokenSource("t"), allow_insecure_http=True
        )
        proxy.register("near", "http://127.0.0.1:9/mcp", StaticTokenSource("t"))
        proxy.register("tls", "https://mcp.example.com/mcp", StaticTokenSource("t"))
        assert set(proxy.targets) == {"far", "near", "tls"}
