from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest

from freshtoken import ConfigError
from freshtoken.plugin import FreshtokenConfig
from freshtoken.scenarios import parse_scenario


def test_every_config_field_is_a_marker_argument() -> None:
    config = FreshtokenConfig()
    for field in dataclasses.fields(FreshtokenConfig):
        assert config.replace(**{field.name: getattr(config, field.name)}) == config


@pytest.mark.parametrize(
    ("argument", "value", "reason"),
    [
        ("protocol_version", "2024-11-05", "Input should be '2025-06-18', '2025-11-25' or"),
        ("access_ttl", -1, "Input should be greater than 0"),
        ("access_ttl", 0, "Input should be greater than 0"),
        ("access_ttl", True, "Input should be a valid number"),
        ("access_ttl", float("inf"), "Input should be a finite number"),
        ("grace_period", float("nan"), "Input should be a finite number"),
        ("grace_period", -0.5, "Input should be greater than or equal to 0"),
        ("tls", "yes", "Input should be a valid boolean"),
        ("tls", 1, "Input should be a valid boolean"),
        ("response_mode", "xml", "Input should be 'json' or 'sse'"),
        ("auth_failure_style", "418", "Input should be '401', '200-jsonrpc'"),
    ],
)
def test_bad_value_names_argument_and_reason(argument: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        FreshtokenConfig().replace(**{argument: value})
    assert str(excinfo.value).startswith(f"marker freshtoken: {argument}: {reason}")
    assert (excinfo.value.source, excinfo.value.field) == ("marker freshtoken", argument)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("access_ttl", 0),
        ("access_ttl", float("nan")),
        ("grace_period", -1),
        ("report_expires_in", "no"),
        ("stream_auth", "never"),
    ],
)
def test_marker_and_scenario_file_refuse_the_same_values(
    tmp_path: Path, argument: str, value: object
) -> None:
    with pytest.raises(ConfigError) as from_marker:
        FreshtokenConfig().replace(**{argument: value})
    with pytest.raises(ConfigError) as from_file:
        parse_scenario({"name": "x", "setup": {argument: value}, "steps": [{"step": "initialize"}]})
    assert from_marker.value.reason == from_file.value.reason
    assert from_file.value.field == f"setup.{argument}"


def test_marker_accepts_what_a_scenario_file_accepts() -> None:
    values = {"access_ttl": 0.5, "grace_period": 0, "protocol_version": "2026-07-28", "tls": True}
    from_file = parse_scenario({"name": "x", "setup": values, "steps": [{"step": "initialize"}]})
    assert FreshtokenConfig().replace(**values) == FreshtokenConfig(**vars(from_file.setup))


def test_unknown_argument_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as excinfo:
        FreshtokenConfig().apply_markers([((), {"ttl": 5})])
    message = str(excinfo.value)
    assert message.startswith("marker freshtoken: ttl: unknown argument (allowed arguments: ")
    assert "access_ttl, assert_all_faults_fired, auth_failure_style" in message


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"^marker freshtoken: \(arguments\): keyword arguments only"
    ):
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
            "*test_bad_value: marker freshtoken: response_mode: Input should be 'json' or 'sse'",
            "*test_typo: marker freshtoken: acces_ttl: unknown argument (allowed arguments: *",
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


def test_marker_beats_directory_config_which_beats_defaults(downstream: pytest.Pytester) -> None:
    downstream.makeconftest(
        """
        import pytest

        @pytest.fixture
        def freshtoken_config(freshtoken_config):
            return freshtoken_config.replace(access_ttl=30, response_mode="json", tls=True)
        """
    )
    downstream.makepyfile(
        """
        import pytest

        def test_directory(freshtoken_auth_server, freshtoken_mcp_server):
            assert freshtoken_auth_server.policy.access_ttl == 30
            assert freshtoken_mcp_server.response_mode == "json"
            assert freshtoken_mcp_server.url.startswith("https://")

        @pytest.mark.freshtoken(access_ttl=5, tls=False)
        def test_marker(freshtoken_auth_server, freshtoken_mcp_server):
            assert freshtoken_auth_server.policy.access_ttl == 5
            assert freshtoken_mcp_server.url.startswith("http://")
            # Fields the marker leaves alone keep the directory's value, then the default.
            assert freshtoken_mcp_server.response_mode == "json"
            assert freshtoken_auth_server.policy.rotate_refresh_tokens is True
        """
    )
    downstream.runpytest().assert_outcomes(passed=2)
