"""The token store: crash-safe writes, stale temp files, durability, and what is read back."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from freshtoken import InvalidGrantError, ManualClock, Timeline, TokenSourceError, fingerprint
from freshtoken.fakes import FakeAuthorizationServer, TokenPolicy
from freshtoken.proxy import RefreshTokenSource
from freshtoken.proxy._store import StoredTokens, TokenStore

_CRASH_DURING_RENAME = """
import os, sys
from freshtoken.proxy._store import StoredTokens, TokenStore
os.replace = lambda *args: os._exit(9)  # the process dies between writing and renaming
TokenStore(sys.argv[1]).save(StoredTokens("rt-new"))
"""


def test_a_crash_leaves_a_recognizable_temp_file_that_the_next_start_removes(
    tmp_path: Path,
) -> None:
    store = tmp_path / "tokens.json"
    TokenStore(store).save(StoredTokens("rt-old"))
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASH_DURING_RENAME, str(store)], check=False, timeout=60
    )
    assert crashed.returncode == 9
    [leftover] = [p for p in tmp_path.iterdir() if p.name != "tokens.json"]
    assert leftover.name.startswith(".tokens.json.")
    assert leftover.name.endswith(".freshtoken-tmp")
    assert stat.S_IMODE(leftover.stat().st_mode) == 0o600
    unrelated = [
        tmp_path / "notes.txt",
        tmp_path / ".tokens.json.bak",
        tmp_path / "x.freshtoken-tmp",
    ]
    for path in unrelated:
        path.write_text("keep me")

    source = RefreshTokenSource("https://as.test/token", "c", store=store)

    assert not leftover.exists()
    assert all(path.read_text() == "keep me" for path in unrelated)
    # The crash happened before the rename: the store still holds the previous token, whole.
    assert source.refresh_token_fingerprint == fingerprint("rt-old")


def test_the_directory_is_fsynced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    TokenStore(tmp_path / "state" / "tokens.json").save(StoredTokens("rt", "at", 123.0))
    assert calls == ["fsync-file", "replace", "fsync-dir"]
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["tokens.json"]


async def test_the_rotated_refresh_token_is_stored_before_the_access_token_is_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "tokens.json"
    order: list[str] = []
    real_save = TokenStore.save

    def save(self: TokenStore, tokens: StoredTokens) -> None:
        real_save(self, tokens)
        order.append(f"stored {fingerprint(tokens.refresh_token)}")

    monkeypatch.setattr(TokenStore, "save", save)
    async with FakeAuthorizationServer(policy=TokenPolicy(access_ttl=60)) as auth:
        pair = auth.issue_tokens()
        source = RefreshTokenSource(
            auth.token_endpoint,
            auth.client_id,
            auth.client_secret,
            refresh_token=pair.refresh_token,
            store=store,
        )
        for _ in range(3):
            token = await source.refresh(source.current)
            order.append("handed out")
            # The store already holds what the next restart needs: the newest refresh token.
            saved = json.loads(store.read_text())
            assert fingerprint(saved["refresh_token"]) == source.refresh_token_fingerprint
            assert saved["access_token"] == token
        await source.aclose()
        [first, *_] = auth.token_requests_seen("refresh_token")
        assert first.refresh_token == fingerprint(pair.refresh_token)
    assert [entry.split()[0] for entry in order] == ["stored", "handed"] * 3
    assert len(set(order)) == 4  # three different rotated refresh tokens, each stored
    assert stat.S_IMODE(store.stat().st_mode) == 0o600


async def test_a_failed_store_write_is_reported_and_the_token_still_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full_disk(self: TokenStore, tokens: StoredTokens) -> None:
        raise OSError(28, "No space left on device")

    timeline = Timeline()
    async with FakeAuthorizationServer() as auth:
        pair = auth.issue_tokens()
        source = RefreshTokenSource(
            auth.token_endpoint,
            auth.client_id,
            auth.client_secret,
            refresh_token=pair.refresh_token,
            store=tmp_path / "tokens.json",
            timeline=timeline,
        )
        monkeypatch.setattr(TokenStore, "save", full_disk)
        token = await source.token()
        assert auth.validate_access_token(token) is not None
        # The rotated refresh token is held in memory: the next grant presents it, not the old.
        await source.refresh(token)
        [_, second] = auth.token_requests_seen("refresh_token")
        assert second.status == 200
        await source.aclose()
    assert timeline.count(kind="store.failed") == 2
    assert any(
        "No space left" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
    )


async def test_a_malformed_access_token_in_the_store_is_dropped_never_sent(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with FakeAuthorizationServer(clock=clock) as auth:
        pair = auth.issue_tokens()
        store = tmp_path / "tokens.json"
        store.write_text(
            json.dumps(
                {
                    "refresh_token": pair.refresh_token,
                    "access_token": "stale\r\nX-Injected: 1",
                    "expires_at": clock.time() + 3600,
                }
            )
        )
        source = RefreshTokenSource(
            auth.token_endpoint, auth.client_id, auth.client_secret, store=store, clock=clock
        )
        assert source.current is None
        token = await source.token()
        assert auth.validate_access_token(token) is not None
        assert len(auth.token_requests_seen("refresh_token")) == 1
        assert json.loads(store.read_text())["access_token"] == token
        await source.aclose()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"refresh_token": "rt\\r\\nX-Injected: 1"}', "outside RFC 6749"),
        ('{"refresh_token": "rt\\u0000"}', "outside RFC 6749"),
        ('{"refresh_token": ""}', "refresh_token"),
        ('{"refresh_token": "rt", "expires_at": "soon"}', "expires_at"),
        ("not json", "not JSON"),
    ],
)
def test_a_malformed_store_is_refused(tmp_path: Path, content: str, reason: str) -> None:
    store = tmp_path / "tokens.json"
    store.write_text(content)
    with pytest.raises(TokenSourceError, match=reason) as info:
        RefreshTokenSource("https://as.test/token", "c", store=store)
    assert "X-Injected" not in str(info.value)


async def test_a_store_without_refresh_token_serves_its_access_token_then_asks_for_a_login(
    tmp_path: Path,
) -> None:
    # What a login leaves when the authorization server issued no refresh token.
    clock = ManualClock()
    store = tmp_path / "tokens.json"
    store.write_text(json.dumps({"access_token": "at", "expires_at": clock.time() + 60}))
    source = RefreshTokenSource("https://as.test/token", "c", store=store, clock=clock)
    assert await source.token() == "at"
    clock.advance(61)
    with pytest.raises(InvalidGrantError, match=r"no refresh token .* log in again"):
        await source.token()
    assert source.fetches == 0
    await source.aclose()


def test_store_refuses_to_write_malformed_tokens(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    with pytest.raises(ValueError, match="refresh token"):
        store.save(StoredTokens("rt\n"))
    with pytest.raises(ValueError, match="access token"):
        store.save(StoredTokens("rt", "a b"))
    assert list(tmp_path.iterdir()) == []
