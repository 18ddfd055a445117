"""Authentication over a real gRPC channel and real HTTP to the embedded service with keys."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from mediagen.auth.principal import Principal, Role
from mediagen.embedded import Embedded
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.auth.conftest import Secured, create_keys
from tests.fixtures.embedded import embedded_settings

Metadata = list[tuple[str, str]]


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError("no ErrorInfo")


async def _list(secured: Secured, metadata: Metadata) -> pb.ListJobsResponse:
    async with grpc.aio.insecure_channel(secured.app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        response: pb.ListJobsResponse = await stub.ListJobs(
            pb.ListJobsRequest(), metadata=metadata, timeout=10
        )
        return response


async def _refused(secured: Secured, metadata: Metadata) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list(secured, metadata)
    return caught.value


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ([], "CREDENTIALS_MISSING"),
        ([("authorization", "Bearer nonsense")], "API_KEY_INVALID"),
        ([("authorization", "Basic dXNlcjpwYXNz")], "API_KEY_INVALID"),
        ([("authorization", "Bearer mg_0123456789ab_" + "A" * 43)], "API_KEY_INVALID"),
    ],
)
async def test_missing_malformed_and_unknown_keys_are_unauthenticated(
    secured: Secured, metadata: Metadata, reason: str
) -> None:
    error = await _refused(secured, metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _reason(error) == reason
    assert not secured.seen  # the servicer never ran


async def test_a_wrong_secret_for_a_real_key_id_is_unauthenticated(secured: Secured) -> None:
    real = secured.keys["acme"]
    forged = real[:-1] + ("B" if real[-1] != "B" else "C")
    error = await _refused(secured, [("authorization", f"Bearer {forged}")])
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "invalid API key"


async def test_health_answers_without_a_key(secured: Secured) -> None:
    async with grpc.aio.insecure_channel(secured.app.grpc_target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{secured.app.http_port}") as http:
        response = await http.get("/api/v1/health")
    assert response.status_code == 200 and response.json()["status"] == "SERVING"
    # The component report passes the interceptor too.
    names = [c["name"] for c in response.json()["components"]]
    assert names == ["api", "database", "storage"]


async def test_a_valid_key_is_the_principal_the_servicer_sees(secured: Secured) -> None:
    await _list(secured, secured.bearer("acme"))
    assert secured.seen == [
        ("ListJobs", Principal("acme", Role.TENANT, via="key", key_id=secured.ids["acme"]))
    ]


async def test_streams_run_as_the_caller_too(secured: Secured) -> None:
    async with grpc.aio.insecure_channel(secured.app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        job = (
            await stub.GenerateMedia(
                pb.GenerateMediaRequest(prompt="a fox"), metadata=secured.bearer("globex")
            )
        ).job
        events = [
            response.event.sequence
            async for response in stub.WatchJob(
                pb.WatchJobRequest(id=job.id), metadata=secured.bearer("globex")
            )
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.WatchJob(pb.WatchJobRequest(id=job.id)):
                pass
    assert events and events == sorted(events)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    watch = [p for name, p in secured.seen if name == "WatchJob"]
    assert [p.tenant for p in watch] == ["globex"]  # the unauthenticated watch never started


async def test_a_revoked_key_stops_working(secured: Secured) -> None:
    await _list(secured, secured.bearer("acme"))
    await secured.store.revoke(secured.ids["acme"])
    error = await _refused(secured, secured.bearer("acme"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (error.details() or "")


async def test_a_viewer_reads_but_may_not_generate_or_cancel(secured: Secured) -> None:
    async with grpc.aio.insecure_channel(secured.app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        await stub.ListJobs(pb.ListJobsRequest(), metadata=secured.bearer("acme_viewer"))
        for call in (
            stub.GenerateMedia(
                pb.GenerateMediaRequest(prompt="a fox"), metadata=secured.bearer("acme_viewer")
            ),
            stub.CancelJob(pb.CancelJobRequest(id="x"), metadata=secured.bearer("acme_viewer")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert _reason(caught.value) == "ROLE_READ_ONLY"
    assert [name for name, _ in secured.seen] == ["ListJobs"]


async def test_only_an_admin_may_act_for_another_tenant(secured: Secured) -> None:
    as_globex = [("x-mediagen-tenant", "globex")]
    await _list(secured, [*secured.bearer("admin"), *as_globex])
    await _list(secured, [*secured.bearer("acme"), ("x-mediagen-tenant", "acme")])
    error = await _refused(secured, [*secured.bearer("acme"), *as_globex])
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _reason(error) == "TENANT_OVERRIDE_DENIED"
    assert [(p.tenant, p.role) for _, p in secured.seen] == [
        ("globex", Role.TENANT),
        ("acme", Role.TENANT),
    ]


async def test_http_maps_refusals_to_401_and_403(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{secured.app.http_port}") as http:
        missing = await http.get("/api/v1/jobs")
        wrong = await http.get("/api/v1/jobs", headers={"Authorization": "Bearer mg_nope"})
        ok = await http.get(
            "/api/v1/jobs", headers={"Authorization": f"Bearer {secured.keys['acme']}"}
        )
        denied = await http.post(
            "/api/v1/jobs/generate",
            json={"prompt": "a fox"},
            headers={"Authorization": f"Bearer {secured.keys['acme_viewer']}"},
        )
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert ok.status_code == 200
    assert denied.status_code == 403
    assert denied.json()["details"][0]["reason"] == "ROLE_READ_ONLY"
    assert [(name, p.tenant) for name, p in secured.seen] == [("ListJobs", "acme")]


async def test_a_revoked_key_is_401_over_http(secured: Secured) -> None:
    headers = {"Authorization": f"Bearer {secured.keys['globex']}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{secured.app.http_port}") as http:
        assert (await http.get("/api/v1/jobs", headers=headers)).status_code == 200
        await secured.store.revoke(secured.ids["globex"])
        revoked = await http.get("/api/v1/jobs", headers=headers)
        health = await http.get("/api/v1/health")
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"].startswith("Bearer")
    assert revoked.json()["details"][0]["reason"] == "API_KEY_INVALID"
    assert secured.keys["globex"] not in revoked.text
    assert health.status_code == 200 and health.json()["status"] == "SERVING"


async def test_reflection_is_open_by_default(secured: Secured) -> None:
    async with grpc.aio.insecure_channel(secured.app.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in replies[0].list_services_response.service}
    assert "mediagen.v1.MediaGenerationService" in names


async def test_the_secret_never_reaches_the_log(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    await _list(secured, secured.bearer("acme"))
    wrong = f"mg_{secured.ids['acme']}_{'A' * 43}"
    await _refused(secured, [("authorization", f"Bearer {wrong}")])
    await secured.store.revoke(secured.ids["acme"])
    await _refused(secured, secured.bearer("acme"))
    assert secured.ids["acme"] in caplog.text
    for text in secured.keys.values():
        assert text.split("_", 2)[2] not in caplog.text


async def test_reflection_can_require_a_key(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data", auth_reflection=True)
    settings.data_dir.mkdir(parents=True)
    keys, _ = await create_keys(settings.effective_database_url)
    app = Embedded(settings, with_gateway=False)
    await app.start()
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        async with grpc.aio.insecure_channel(app.grpc_target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stub.ServerReflectionInfo(iter([request])):
                    pass
            bearer = [("authorization", f"Bearer {keys['acme_viewer']}")]
            replies = [r async for r in stub.ServerReflectionInfo(iter([request]), metadata=bearer)]
    finally:
        await app.stop()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "grpc.health.v1.Health" in {s.name for s in replies[0].list_services_response.service}
