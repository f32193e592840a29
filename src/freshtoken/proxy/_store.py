"""The token store: one JSON file holding a refresh-token source's newest tokens, crash-safe.

Besides the tokens, a store written by ``freshtoken login`` keeps the *login record*
(:class:`StoredLogin`): everything the proxy needs to refresh later — token endpoint, client id
and secret, client authentication method, RFC 8707 resource, scope — so a proxy target can name
its store and nothing else. Rewriting the tokens (a rotation) keeps the login record.

A rotated refresh token that exists only in memory is lost with the process, and with reuse
detection the old one is dead too: the grant has to be authorized again. So the store is written
before the new access token is handed out, atomically (a 0600 temp file in the same directory,
fsynced, renamed over the store, then the directory fsynced so the rename itself survives a power
cut), and temp files a crash left behind are removed when a source opens the store.

One store belongs to one process: two processes rotating the same refresh token would revoke
each other's family anyway.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from freshtoken._errors import ConfigError, TokenSourceError
from freshtoken._schema import parse
from freshtoken.proxy._tokens import valid_access_token, valid_refresh_token

__all__ = ["StoredLogin", "StoredTokens", "TokenStore"]

log = logging.getLogger("freshtoken.proxy")

# Temp files are named ".<store name>.<random>.freshtoken-tmp": recognizably ours, so the clean-up
# at start never touches anything else in the directory.
_TMP_SUFFIX: Final = ".freshtoken-tmp"


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """What a store holds: the refresh token and, when known, the access token and its expiry.

    ``refresh_token`` is None only in a store written by a login whose authorization server
    issued no refresh token (or by a client-credentials login): the access token then works
    until it expires, and only a new login replaces it.
    """

    refresh_token: str | None
    access_token: str | None = None
    expires_at: float | None = None


AuthMethod = Literal["client_secret_basic", "client_secret_post", "none", "private_key_jwt"]
Grant = Literal["authorization_code", "client_credentials"]
Registration = Literal["pre-registered", "dynamic", "metadata-document", "fallback"]


@dataclass(frozen=True, slots=True)
class StoredLogin:
    """What ``freshtoken login`` learned, kept beside the tokens so the proxy can refresh later.

    ``grant`` is the grant the login used (the proxy refreshes an ``authorization_code`` login
    with the refresh-token grant and re-runs a ``client_credentials`` one); ``registration`` says
    where ``client_id`` came from; ``revocation_endpoint`` is used by ``--logout``.
    """

    server_url: Annotated[str, Field(min_length=1)]
    token_endpoint: Annotated[str, Field(min_length=1)]
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: str | None = None
    auth_method: AuthMethod = "client_secret_basic"
    resource: str | None = None
    scope: str | None = None
    grant: Grant = "authorization_code"
    issuer: str | None = None
    revocation_endpoint: str | None = None
    registration: Registration = "pre-registered"
    redirect_uri: str | None = None
    obtained_at: float | None = None
    private_key_file: str | None = None
    """With ``private_key_jwt``: where the client's key is (the store keeps no key)."""
    signing_alg: str | None = None


class _StoreFile(BaseModel):
    # Lenient about extra keys (a newer freshtoken may add some), strict about the tokens: a
    # token that could not be sent safely is never read back into memory.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    refresh_token: Annotated[str, Field(min_length=1)] | None = None
    access_token: str | None = None
    expires_at: float | None = None
    login: StoredLogin | None = None


class TokenStore:
    """The store file at ``path``; :meth:`open` cleans temp files left by a crash.

    The login record last read or written (:attr:`login`) is written again with every
    :meth:`save`, so a rotation never drops what the next refresh needs.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.login: StoredLogin | None = None

    def open(self) -> StoredTokens | None:
        """Remove stale temp files, then read the store (None if there is no store yet)."""
        self.clean_stale()
        return self.load()

    def clean_stale(self) -> list[Path]:
        """Delete temp files an interrupted write left next to the store; return them."""
        removed = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for stale in self.path.parent.glob(f".{self.path.name}.*{_TMP_SUFFIX}"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
                    removed.append(stale)
        if removed:
            log.info("token store %s: removed %d stale temp file(s)", self.path, len(removed))
        return removed

    def load(self) -> StoredTokens | None:
        """Read the store (its login record goes to :attr:`login`). A malformed refresh token is
        an error; a malformed access token is dropped (the source fetches a new one), never
        returned. None if there is no store, or a store with no token at all."""
        stored = self._read()
        if stored is None:
            return None
        self.login = stored.login
        if stored.refresh_token is not None and not valid_refresh_token(stored.refresh_token):
            raise TokenSourceError(
                f"token store {self.path} holds a refresh token outside RFC 6749 syntax; refused"
            )
        access = stored.access_token
        if access is not None and not valid_access_token(access):
            log.warning(
                "token store %s holds an access token outside RFC 6750 syntax; ignoring it",
                self.path,
            )
            access = None
        if stored.refresh_token is None and access is None:
            return None
        return StoredTokens(
            refresh_token=stored.refresh_token,
            access_token=access,
            expires_at=stored.expires_at if access is not None else None,
        )

    def _read(self) -> _StoreFile | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenSourceError(
                f"token store {self.path} is unreadable: {exc.strerror or exc}"
            ) from None
        try:
            data = json.loads(text)
            stored: _StoreFile = parse(_StoreFile, data, source=f"token store {self.path}")
        except (ValueError, ConfigError) as exc:
            reason = exc.reason if isinstance(exc, ConfigError) and exc.reason else "not JSON"
            field = exc.field if isinstance(exc, ConfigError) else None
            where = f" ({field})" if field else ""
            raise TokenSourceError(
                f"token store {self.path} is malformed{where}: {reason}"
            ) from None
        return stored

    def save(self, tokens: StoredTokens) -> None:
        """Replace the store with ``tokens`` (and the login record it holds), atomically and
        durably, readable by the owner only."""
        self._write(tokens, self.login)

    def save_login(self, login: StoredLogin, tokens: StoredTokens) -> None:
        """Replace the store with a new login: its record and its first tokens."""
        self._write(tokens, login)
        self.login = login

    def delete(self) -> bool:
        """Remove the store (and stray temp files); True if there was one."""
        self.clean_stale()
        self.login = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        _fsync_directory(self.path.parent)
        return True

    def _write(self, tokens: StoredTokens, login: StoredLogin | None) -> None:
        if tokens.refresh_token is not None and not valid_refresh_token(tokens.refresh_token):
            raise ValueError("refusing to store a refresh token outside RFC 6749 syntax")
        if tokens.access_token is not None and not valid_access_token(tokens.access_token):
            raise ValueError("refusing to store an access token outside RFC 6750 syntax")
        payload: dict[str, Any] = {}
        if tokens.refresh_token is not None:
            payload["refresh_token"] = tokens.refresh_token
        if tokens.access_token is not None:
            payload["access_token"] = tokens.access_token
            payload["expires_at"] = tokens.expires_at
        if login is not None:
            payload["login"] = {k: v for k, v in asdict(login).items() if v is not None}
        _write_private_atomically(self.path, json.dumps(payload))


def _write_private_atomically(path: Path, text: str) -> None:
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600, so the secret is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk. Some platforms and file
    # systems cannot open or fsync a directory; the rename is then as durable as they allow.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
