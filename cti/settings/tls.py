"""TLS of the HTTP API (``http.tls``) and of the MQTT connection (``mqtt.tls``), issue 15.

The files are loaded at validation time, into the very ``ssl.SSLContext`` the adapters
use: a missing, unreadable or malformed certificate or key, or a key that does not match
its certificate, is a configuration problem (``config error: http.tls.keyfile: …``, exit 2
at start and in ``cti check-config``), never a traceback once the daemon is serving.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from cti.settings.base import FROZEN

__all__ = ["TlsClientSettings", "TlsServerSettings"]


class _NamedClientContext(ssl.SSLContext):
    """A client context that checks the peer's certificate against ``server_name`` instead
    of the host it connects to: paho (under aiomqtt) passes its host as ``server_hostname``
    and offers no other way (a broker reached by IP whose certificate names it by DNS)."""

    server_name: str | None = None

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.server_name is not None:
            kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(*args, **kwargs)


def _load(what: str, path: Path, load: Any) -> None:
    try:
        load()
    except (OSError, ssl.SSLError) as exc:
        # ssl.SSLError is an OSError; strerror is None for OpenSSL's own errors
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        msg = f"cannot load {what} {str(path)!r}: {reason}"
        raise ValueError(msg) from exc


class TlsServerSettings(BaseModel):
    """TLS on a listener of the daemon (the HTTP API): its certificate and key, and
    optionally the CA whose certificates clients must show (mutual TLS)."""

    model_config = FROZEN

    certfile: Path = Field(
        description="PEM certificate of the listener (the chain after it, if any)."
    )
    keyfile: Path = Field(description="PEM private key of certfile (unencrypted; mode 600).")
    client_ca: Path | None = Field(
        default=None,
        description="PEM CA certificate(s): when set, a client must present a certificate "
        "signed by one of them (mutual TLS), else the handshake fails. Bearer tokens are "
        "still needed on /api/v1.",
    )

    @model_validator(mode="after")
    def _files_load(self) -> TlsServerSettings:
        self.server_context()
        return self

    def server_context(self) -> ssl.SSLContext:
        """The listener's context (TLS 1.2 at least); raises ValueError naming the file."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        _load(
            "certfile/keyfile",
            self.certfile,
            lambda: ctx.load_cert_chain(str(self.certfile), str(self.keyfile)),
        )
        if self.client_ca is not None:
            ca = self.client_ca
            _load("client_ca", ca, lambda: ctx.load_verify_locations(cafile=str(ca)))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


class TlsClientSettings(BaseModel):
    """TLS to a server the daemon connects to (the MQTT broker): whom to trust, what
    certificate to show, and which name the server's certificate must carry."""

    model_config = FROZEN

    ca: Path | None = Field(
        default=None,
        description="PEM CA certificate(s) the server's certificate must be signed by; "
        "none = the system's trust store.",
    )
    certfile: Path | None = Field(
        default=None,
        description="PEM client certificate, for a broker that wants one "
        "(require_certificate true); needs keyfile.",
    )
    keyfile: Path | None = Field(default=None, description="PEM private key of certfile.")
    server_name: str | None = Field(
        default=None,
        min_length=1,
        description="The name the server's certificate must carry; none = the host "
        "connected to (mqtt.host).",
    )
    check_hostname: bool = Field(
        default=True,
        description="Check the certificate's name (false: any certificate signed by the "
        "CA is accepted; only for a test bed).",
    )

    @model_validator(mode="after")
    def _files_load(self) -> TlsClientSettings:
        if (self.certfile is None) != (self.keyfile is None):
            msg = "certfile and keyfile go together"
            raise ValueError(msg)
        self.client_context()
        return self

    def client_context(self) -> ssl.SSLContext:
        """The connection's context (TLS 1.2 at least, the certificate always verified)."""
        ctx = _NamedClientContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.server_name = self.server_name
        if self.ca is not None:
            ca = self.ca
            _load("ca", ca, lambda: ctx.load_verify_locations(cafile=str(ca)))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.certfile is not None and self.keyfile is not None:
            cert, key = self.certfile, self.keyfile
            _load("certfile/keyfile", cert, lambda: ctx.load_cert_chain(str(cert), str(key)))
        ctx.check_hostname = self.check_hostname
        return ctx
