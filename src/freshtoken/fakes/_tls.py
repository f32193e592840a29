"""TLS for the fakes from a throwaway trustme certificate authority."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["FakeCA"]

_LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


class FakeCA:
    """A certificate authority whose server certificate covers every loopback name.

    Clients get the CA as a PEM file path (:attr:`ca_path`, for other languages and
    ``SSL_CERT_FILE``-style variables) or as an :class:`ssl.SSLContext`.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        # Imported here: trustme loads cryptography, which a run without TLS never needs.
        import trustme

        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert(*_LOOPBACK_NAMES)
        self._owned_dir = directory is None
        self._dir = Path(
            tempfile.mkdtemp(prefix="freshtoken-ca-") if directory is None else directory
        )
        self._dir.mkdir(parents=True, exist_ok=True)
        self.ca_path = self._dir / "freshtoken-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    def server_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(ctx)
        return ctx

    def close(self) -> None:
        if self._owned_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
