"""A verified client certificate stands for its tenant, over real TLS on loopback (trustme CA).

The server is the real servicer behind the real AuthInterceptor, with its own
``grpc.ssl_server_credentials``; the TLS settings of ``mediagen serve`` are built elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from mediagen.api.servicer import MediaGenerationServicer
from mediagen.auth.interceptor import AuthInterceptor
from mediagen.auth.mtls import CertificatePolicy
from mediagen.auth.principal import Principal, Role
from mediagen.auth.store import KeyStore
from mediagen.auth.verifier import KeyVerifier
from mediagen.config import Settings
from mediagen.jobs.migrate import upgrade
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from mediagen.wiring import build_servicer, open_core
from tests.auth.conftest import recording_unary


@dataclass
class TlsService:
    ca: trustme.CA
    store: KeyStore
    seen: list[tuple[str, Principal]]
    ports: dict[str, int]  # "mtls": client CA required; "tls": server certificate only

    async def list_jobs(self, port: str, cert: trustme.LeafCert | None, **kw: str) -> None:
        credentials = grpc.ssl_channel_credentials(
            self.ca.cert_pem.bytes(),
            cert.private_key_pem.bytes() if cert else None,
            cert.cert_chain_pems[0].bytes() if cert else None,
        )
        metadata = [("authorization", f"Bearer {kw['key']}")] if "key" in kw else []
        async with grpc.aio.secure_channel(f"localhost:{self.ports[port]}", credentials) as ch:
            await pb_grpc.MediaGenerationServiceStub(ch).ListJobs(
                pb.ListJobsRequest(), metadata=metadata, timeout=10
            )


@pytest.fixture
async def tls_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TlsService]:
    seen: list[tuple[str, Principal]] = []
    monkeypatch.setattr(MediaGenerationServicer, "ListJobs", recording_unary("ListJobs", seen))
    settings = Settings(data_dir=tmp_path, redis_url=None, secret_key="test-secret")
    await upgrade(settings.effective_database_url)
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost")
    pair = [(server_cert.private_key_pem.bytes(), server_cert.cert_chain_pems[0].bytes())]
    async with open_core(settings, worker=False) as core:
        store = KeyStore(core.db)
        interceptor = AuthInterceptor(
            KeyVerifier(store, cache_s=0),
            certificates=CertificatePolicy.of(["ops-robot"], ["acme"]),
        )
        server = grpc.aio.server(interceptors=[interceptor])
        pb_grpc.add_MediaGenerationServiceServicer_to_server(build_servicer(core), server)
        ports = {
            "mtls": server.add_secure_port(
                "127.0.0.1:0",
                grpc.ssl_server_credentials(
                    pair, root_certificates=ca.cert_pem.bytes(), require_client_auth=True
                ),
            ),
            "tls": server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(pair)),
        }
        await server.start()
        try:
            yield TlsService(ca, store, seen, ports)
        finally:
            await server.stop(None)


async def test_the_certificate_common_name_is_the_tenant(tls_service: TlsService) -> None:
    await tls_service.list_jobs(
        "mtls", tls_service.ca.issue_cert("acme.example", common_name="acme")
    )
    assert tls_service.seen == [("ListJobs", Principal("acme", Role.TENANT, via="mtls"))]


async def test_an_unlisted_certificate_needs_a_key(tls_service: TlsService) -> None:
    # The gateway's own certificate, say: calls through it without a key act as no one.
    cert = tls_service.ca.issue_cert("gateway.internal", common_name="gateway")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tls_service.list_jobs("mtls", cert)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert tls_service.seen == []


async def test_configured_subjects_are_admins(tls_service: TlsService) -> None:
    await tls_service.list_jobs("mtls", tls_service.ca.issue_cert("ops-robot", common_name="ops"))
    assert tls_service.seen == [("ListJobs", Principal("ops", Role.ADMIN, via="mtls"))]


async def test_a_bearer_key_wins_over_the_certificate(tls_service: TlsService) -> None:
    record, key = await tls_service.store.create("globex")
    cert = tls_service.ca.issue_cert("acme.example", common_name="acme")
    await tls_service.list_jobs("mtls", cert, key=key.text)
    assert tls_service.seen == [
        ("ListJobs", Principal("globex", Role.TENANT, via="key", key_id=record.key_id))
    ]


async def test_without_a_client_ca_a_certificate_is_nobody(tls_service: TlsService) -> None:
    cert = tls_service.ca.issue_cert("acme.example", common_name="acme")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tls_service.list_jobs("tls", cert)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert tls_service.seen == []


async def test_a_certificate_from_another_ca_is_refused(tls_service: TlsService) -> None:
    stranger = trustme.CA().issue_cert("acme.example", common_name="acme")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tls_service.list_jobs("mtls", stranger)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    assert tls_service.seen == []
