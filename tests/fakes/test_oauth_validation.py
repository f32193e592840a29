"""Every input of the fake authorization server goes through the schema: one rule per field,
unknown keys refused, one error line ``<source>: <field>: <reason>`` from Python and over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from oauth_helpers import SOCKETS, OAuthHarness, oauth_harness

from freshtoken import ConfigError
from freshtoken.fakes import OAuthCore, TokenFault, TokenPolicy

POLICY_ERRORS = [
    ({"access_ttl": 0}, "access_ttl", "Input should be greater than 0"),
    ({"access_ttl": -1}, "access_ttl", "Input should be greater than 0"),
    ({"access_ttl": "5"}, "access_ttl", "Input should be a valid number"),
    ({"access_ttl": True}, "access_ttl", "Input should be a valid number"),
    ({"access_ttl": float("inf")}, "access_ttl", "Input should be a finite number"),
    ({"report_expires_in": "yes"}, "report_expires_in", "Input should be a valid boolean"),
    ({"rotate_refresh_tokens": 1}, "rotate_refresh_tokens", "Input should be a valid boolean"),
    ({"reuse_detection": None}, "reuse_detection", "Input should be a valid boolean"),
    ({"grace_period": -0.5}, "grace_period", "Input should be greater than or equal to 0"),
    ({"grace_period": float("nan")}, "grace_period", "Input should be a finite number"),
    ({"grace_period": True}, "grace_period", "Input should be a valid number"),
    ({"nonsense": 1}, "nonsense", "unknown key"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), POLICY_ERRORS)
def test_a_bad_policy_update_is_one_line_and_changes_nothing(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    policy = TokenPolicy(access_ttl=60)
    with pytest.raises(ConfigError) as caught:
        policy.update({"report_expires_in": False, **changes})
    assert str(caught.value) == f"token policy: {field}: {reason}"
    assert (caught.value.source, caught.value.field) == ("token policy", field)
    assert policy == TokenPolicy(access_ttl=60)


@pytest.mark.parametrize(("changes", "field", "reason"), POLICY_ERRORS[:-1])
def test_building_or_assigning_a_bad_policy_is_refused_the_same_way(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as built:
        TokenPolicy(**changes)
    assert str(built.value) == f"TokenPolicy: {field}: {reason}"
    policy = TokenPolicy()
    ((name, value),) = changes.items()
    with pytest.raises(ConfigError) as assigned:
        setattr(policy, name, value)
    assert str(assigned.value) == f"token policy: {field}: {reason}"
    assert policy == TokenPolicy()


def test_good_updates_apply_and_keep_types() -> None:
    policy = TokenPolicy()
    policy.update({"access_ttl": 5, "rotate_refresh_tokens": False})
    assert (policy.access_ttl, policy.rotate_refresh_tokens) == (5.0, False)
    assert isinstance(policy.access_ttl, float)
    policy.grace_period = 2
    assert policy.to_json() == {
        "access_ttl": 5.0,
        "report_expires_in": True,
        "rotate_refresh_tokens": False,
        "reuse_detection": True,
        "grace_period": 2.0,
    }
    assert (
        repr(policy) == "TokenPolicy(access_ttl=5.0, rotate_refresh_tokens=False, grace_period=2.0)"
    )


FAULT_ERRORS = [
    ({"times": 1.5}, "times", "Input should be a valid integer"),
    ({"times": 0}, "times", "Input should be greater than or equal to 1"),
    ({"times": "2"}, "times", "Input should be a valid integer"),
    ({"status": 450.5}, "status", "Input should be a valid integer"),
    ({"status": 99}, "status", "Input should be greater than or equal to 100"),
    ({"status": 600}, "status", "Input should be less than or equal to 599"),
    ({"error": 5}, "error", "Input should be a valid string"),
    ({"delay": -1}, "delay", "Input should be greater than or equal to 0"),
    ({"delay": float("nan")}, "delay", "Input should be a finite number"),
    ({"reset": "yes"}, "reset", "Input should be a valid boolean"),
    ({"garbage": 1}, "garbage", "Input should be a valid boolean"),
    ({"lose_response": "yes"}, "lose_response", "Input should be a valid boolean"),
]


@pytest.mark.parametrize(
    "flags", [{"reset": True, "lose_response": True}, {"garbage": True, "lose_response": True}]
)
def test_a_fault_fails_one_way_only(flags: dict[str, bool]) -> None:
    with pytest.raises(ConfigError) as caught:
        OAuthCore().fail_next(**flags)
    assert str(caught.value) == (
        "fail_next: (top level): reset, garbage and lose_response exclude each other"
    )


@pytest.mark.parametrize(("kwargs", "field", "reason"), FAULT_ERRORS)
def test_fail_next_refuses_each_bad_argument_and_queues_nothing(
    kwargs: dict[str, Any], field: str, reason: str
) -> None:
    core = OAuthCore()
    with pytest.raises(ConfigError) as caught:
        core.fail_next(**kwargs)
    assert str(caught.value) == f"fail_next: {field}: {reason}"
    with pytest.raises(ConfigError, match=rf"^TokenFault: {field}: "):
        TokenFault(**kwargs)
    assert core.faults_pending == 0


@pytest.fixture(params=SOCKETS)
async def oauth(request: pytest.FixtureRequest) -> AsyncIterator[OAuthHarness]:
    async with oauth_harness(request.param) as harness:
        yield harness


async def test_http_fault_inputs_are_refused_with_the_one_line_error(oauth: OAuthHarness) -> None:
    for body, field, reason in [*FAULT_ERRORS[:6], ({"bogus": True}, "bogus", "unknown key")]:
        response = await oauth.control("POST", "faults", body)
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_request",
            "error_description": f"POST /_freshtoken/faults: {field}: {reason}",
        }
    assert oauth.core.faults_pending == 0
    # A refused fault never reaches the token endpoint: it answers normally.
    assert (await oauth.token({"grant_type": "client_credentials"})).status_code == 200


async def test_http_control_arguments_are_checked(oauth: OAuthHarness) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("policy", {"access_ttl": "soon"}, "access_ttl: Input should be a valid number"),
        ("policy", {"access_ttl": 0}, "access_ttl: Input should be greater than 0"),
        ("expire", {}, "token: required"),
        ("revoke", {"token": 5}, "token: Input should be a valid string"),
        ("issue", {"scope": ["read"]}, "scope: Input should be a valid string"),
        ("rotate", {"now": True}, "now: unknown key"),
        ("issue", [1, 2], "(body): must be a JSON object"),
    ]
    for name, body, line in cases:
        response = await oauth.control("POST", name, body)
        assert response.status_code == 400, name
        assert response.json() == {
            "error": "invalid_request",
            "error_description": f"POST /_freshtoken/{name}: {line}",
        }
    garbled = await oauth.client.post(oauth.base + "/_freshtoken/expire", content=b"{nope")
    assert garbled.json()["error_description"] == "POST /_freshtoken/expire: (body): not valid JSON"
    assert oauth.core.policy == TokenPolicy()
    assert oauth.timeline.count(kind="tokens.rotated") == 0


async def test_malformed_redirect_uris_are_refused_not_crashed(oauth: OAuthHarness) -> None:
    for uri in ["http://[", "http://[::1", "http://host:port/x", "https://example.com/#frag"]:
        registered = await oauth.client.post(
            oauth.base + "/register", json={"redirect_uris": [uri]}
        )
        assert registered.status_code == 400, uri
        assert registered.json()["error"] == "invalid_redirect_uri"
        authorize = await oauth.client.get(
            oauth.base + "/authorize",
            params={
                "response_type": "code",
                "client_id": oauth.core.client_id,
                "redirect_uri": uri,
                "code_challenge": "x" * 43,
                "code_challenge_method": "S256",
            },
        )
        assert authorize.status_code == 400, uri
        assert authorize.json()["error"] == "invalid_request"
    oauth.core.check()
