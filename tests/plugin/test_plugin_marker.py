from __future__ import annotations

import dataclasses
import types

import pytest

from freshtoken import ConfigError
from freshtoken.plugin import FreshtokenConfig


def test_every_config_field_is_a_marker_argument() -> None:
    config = FreshtokenConfig()
    for field in dataclasses.fields(FreshtokenConfig):
        assert config.replace(**{field.name: getattr(config, field.name)}) == config


@pytest.mark.parametrize(
    ("argument", "value", "allowed"),
    [
        ("protocol_version", "2024-11-05", "'2025-06-18', '2025-11-25', '2026-07-28'"),
        ("access_ttl", -1, "a number of seconds > 0"),
        ("access_ttl", True, "a number of seconds > 0"),
        ("grace_period", float("nan"), "a number of seconds >= 0"),
        ("tls", "yes", "True or False"),
        ("response_mode", "xml", "'json', 'sse'"),
        ("auth_failure_style", "418", "'401', '200-jsonrpc'"),
    ],
)
def test_bad_value_names_argument_and_allowed_values(
    argument: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError, match=f"{argument}=") as excinfo:
        FreshtokenConfig().replace(**{argument: value})
    assert allowed in str(excinfo.value)


def test_unknown_argument_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="unknown argument 'ttl'") as excinfo:
        FreshtokenConfig().apply_markers([((), {"ttl": 5})])
    assert "access_ttl" in str(excinfo.value)


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="keyword arguments only"):
        FreshtokenConfig().apply_markers([(("json",), {})])


def test_closest_marker_wins_field_by_field() -> None:
    closest_first = [((), {"tls": True}), ((), {"tls": False, "access_ttl": 5})]
    config = FreshtokenConfig().apply_markers(closest_first)
    assert (config.tls, config.access_ttl) == (True, 5)


def test_marker_configures_the_fakes(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.freshtoken(access_ttl=30, response_mode="sse")

        @pytest.mark.freshtoken(protocol_version="2025-06-18", rotate_refresh_tokens=False)
        async def test_configured(freshtoken_auth_server, freshtoken_mcp_server):
            policy = freshtoken_auth_server.policy
            assert policy.access_ttl == 30
            assert policy.rotate_refresh_tokens is False
            assert freshtoken_mcp_server.protocol_version == "2025-06-18"
            assert freshtoken_mcp_server.response_mode == "sse"

        async def test_module_marker_only(freshtoken_config):
            assert freshtoken_config.access_ttl == 30
            assert freshtoken_config.protocol_version == "2025-11-25"
        """
    )
    result = downstream.runpytest()
    result.assert_outcomes(passed=2)


def test_bad_marker_fails_setup_with_a_clear_message(downstream: pytest.Pytester) -> None:
    downstream.makepyfile(
        """
        import pytest

        @pytest.mark.freshtoken(response_mode="xml")
        def test_bad_value():
            pass

        @pytest.mark.freshtoken(acces_ttl=5)
        def test_typo():
            pass
        """
    )
    result = downstream.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_bad_value*response_mode='xml' is not allowed; expected one of 'json', 'sse'*",
            "*test_typo*unknown argument 'acces_ttl'; allowed arguments: access_ttl, *",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_marker_is_registered_for_strict_markers(downstream: pytest.Pytester) -> None:
    result = downstream.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.freshtoken(protocol_version=*", "*freshtoken_scenario*"]
    )


def test_plugin_module_exports_documented_public_names() -> None:
    import freshtoken.plugin as plugin

    assert plugin.__all__ == sorted(plugin.__all__)
    public = {
        name
        for name, value in vars(plugin).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations"}
    assert set(plugin.__all__) == public
    for name in plugin.__all__:
        value = getattr(plugin, name)
        if callable(value) and not isinstance(value, str):
            assert value.__doc__, name
