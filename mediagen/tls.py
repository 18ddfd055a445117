"""TLS for the two listeners (gRPC API, HTTP gateway) and for the clients that dial them.

Server side: :class:`~mediagen.config.TLSSettings` names PEM files; :func:`grpc_server_credentials`
and :func:`uvicorn_ssl_options` turn them into what grpc.aio and uvicorn take. With a client CA,
both listeners *require* a client certificate signed by it (mTLS); gRPC then puts the verified
certificate's identity in the servicer's ``context.auth_context()`` (``x509_common_name``,
``x509_subject_alternative_name``, ``x509_pem_cert``) for the auth interceptor to read.

Client side: :class:`ClientTLS` (the CLI, :class:`mediagen.client.MediagenClient`, the gateway's
own calls to the API) gives gRPC channel credentials and an ``ssl.SSLContext`` for HTTPS
downloads. Every file is read and checked (key matches certificate, PEM parses) when the
credentials are made, so a mistake is a :class:`~mediagen.config.ConfigError` at start-up
naming the file, not a handshake failure on the first call.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx

from mediagen.config import ConfigError, TLSSettings


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}") from exc


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path, what: str) -> None:
    _read(cert, f"{what} certificate")
    _read(key, f"{what} key")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"the {what} certificate {str(cert)!r} and key {str(key)!r} do not form a usable pair "
            f"(PEM, key unencrypted and matching the certificate): {exc.reason or exc}"
        ) from exc


def _load_roots(context: ssl.SSLContext, ca: Path, what: str) -> bytes:
    pem = _read(ca, what)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"the {what} {str(ca)!r} holds no usable PEM certificate") from exc
    return pem


def check_server_files(tls: TLSSettings) -> None:
    """Read every file once and check that certificate and key belong together."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(context, tls.cert, tls.key, "server")
    if tls.client_ca is not None:
        _load_roots(context, tls.client_ca, "client CA file")


def grpc_server_credentials(tls: TLSSettings) -> grpc.ServerCredentials:
    """Credentials for ``server.add_secure_port``; client certificates required with a CA."""
    check_server_files(tls)
    client_ca = _read(tls.client_ca, "client CA file") if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(tls.key, "server key"), _read(tls.cert, "server certificate"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def uvicorn_ssl_options(tls: TLSSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``: the same certificate, the same client rule."""
    check_server_files(tls)
    return {
        "ssl_certfile": str(tls.cert),
        "ssl_keyfile": str(tls.key),
        "ssl_ca_certs": str(tls.client_ca) if tls.client_ca else None,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.mutual else ssl.CERT_NONE,
    }


@dataclass(frozen=True)
class ClientTLS:
    """How a client checks the server and, for mTLS, proves who it is.

    ``ca`` is a PEM bundle of the roots to trust (None: the system's, as gRPC and httpx ship
    them); ``cert`` and ``key`` are the client certificate chain and its key, given together.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("a client certificate needs its key, and a key its certificate")

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials; only ``ca`` is trusted when given (gRPC's roots otherwise)."""
        self.ssl_context()  # reads and checks every file
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA file") if self.ca else None,
            private_key=_read(self.key, "client key") if self.key else None,
            certificate_chain=_read(self.cert, "client certificate") if self.cert else None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """For HTTPS downloads: httpx's default roots plus ``ca`` (media may also live on S3 or
        a CDN under public certificates), and the client certificate for a gateway that asks."""
        context = httpx.create_ssl_context()
        if self.ca is not None:
            _load_roots(context, self.ca, "CA file")
        if self.cert is not None and self.key is not None:
            _load_chain(context, self.cert, self.key, "client")
        return context
