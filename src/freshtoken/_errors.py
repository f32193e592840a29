"""The exception tree: one root, a few branches that mix in the builtin they mean."""

from __future__ import annotations


class FreshtokenError(Exception):
    """Root of every error freshtoken raises on purpose."""


class ConfigError(FreshtokenError, ValueError):
    """A configuration, scenario file, marker argument or option value is invalid.

    The message names where (file, key or argument) and why, in one line:
    ``<source>: <field path>: <reason>``. ``source``, ``field`` and ``reason`` are kept as
    attributes so callers tell error kinds apart without reading the message.
    """

    source: str | None = None
    field: str | None = None
    reason: str | None = None

    @classmethod
    def at(cls, source: str, field: str, reason: str) -> ConfigError:
        """The error for ``field`` of ``source``, in the one format every surface uses."""
        error = cls(f"{source}: {field}: {reason}")
        error.source, error.field, error.reason = source, field, reason
        return error


class TokenSourceError(FreshtokenError):
    """A token source could not produce an access token (transient or exhausted retries)."""


class InvalidGrantError(TokenSourceError):
    """The authorization server refused the grant (`invalid_grant` and friends): terminal, never retried."""


class GrantInDoubtError(InvalidGrantError):
    """A refresh grant was sent but its outcome is unknown (read timeout, connection lost after the
    request was written): its refresh token may have been rotated, so it is never sent again.
    Terminal, like a refused grant, until a new refresh token is set."""


class UpstreamError(FreshtokenError, ConnectionError):
    """An upstream server could not be reached or broke the exchange."""


class ServerSideError(FreshtokenError, AssertionError):
    """A fake server hit an unexpected error while handling a request; re-raised in the test."""


class InvariantViolation(FreshtokenError, AssertionError):
    """A scenario invariant did not hold for the subject under test."""
