"""The test proto (tests/protos/gwtest/v1/echo.proto), compiled at test time, and its servicer.

The proto is compiled with grpc_tools into a temporary folder put on ``sys.path``, together
with a descriptor set that keeps comments, so the OpenAPI test can check descriptions too.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pb2

from mediagen.gateway.comments import comments_from_file_set
from tests.fixtures.gateway import GatewayStack, abort, rich_status, running_stack

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "tests" / "protos"
GOOGLEAPIS = ROOT / "third_party" / "googleapis"


@dataclass(frozen=True)
class EchoProtos:
    pb2: ModuleType
    pb2_grpc: ModuleType
    comments: dict[str, str]

    @property
    def service(self) -> Any:
        return self.pb2.DESCRIPTOR.services_by_name["EchoService"]


@pytest.fixture(scope="session")
def echo_protos(tmp_path_factory: pytest.TempPathFactory) -> EchoProtos:
    out = tmp_path_factory.mktemp("gwtest_gen")
    descriptor_set = out / "echo.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{GOOGLEAPIS}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={descriptor_set}",
            "gwtest/v1/echo.proto",
        ],
        check=True,
        cwd=PROTOS,
    )
    for package in ("gwtest", "gwtest/v1"):
        (out / package / "__init__.py").touch()
    sys.path.insert(0, str(out))
    file_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    return EchoProtos(
        pb2=importlib.import_module("gwtest.v1.echo_pb2"),
        pb2_grpc=importlib.import_module("gwtest.v1.echo_pb2_grpc"),
        comments=comments_from_file_set(file_set.file),
    )


class EchoServicer:
    """Echoes requests (``number=-1``: never answers); streams ticks; records cancellations."""

    def __init__(self, pb2: ModuleType) -> None:
        self.pb2 = pb2
        self.count_cancelled = asyncio.Event()
        self.echo_cancelled = asyncio.Event()

    async def Echo(self, request: Any, context: Any) -> Any:
        if request.number == -1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.echo_cancelled.set()
                raise
        seen = sorted(
            f"{k}={v!r}" if isinstance(v, bytes) else f"{k}={v}"
            for k, v in context.invocation_metadata()
            if not k.startswith(("user-agent", "grpc-accept-encoding"))
        )
        await context.send_initial_metadata([("x-echo", "yes"), ("x-echo-bin", b"\x00\x01")])
        return self.pb2.EchoResponse(request=request, metadata=seen)

    async def GetItem(self, request: Any, context: Any) -> Any:
        item = self.pb2.Item(name=request.name, size=2**40)
        return self.pb2.GetItemResponse(item=item)

    async def ReadPath(self, request: Any, context: Any) -> Any:
        return self.pb2.ReadPathResponse(path=request.path)

    async def Count(self, request: Any, context: Any) -> Any:
        try:
            sequence = request.after_sequence
            while request.count == 0 or sequence < request.count:
                sequence += 1
                tick = self.pb2.Tick(sequence=sequence, text=f"{request.name}-{sequence}")
                yield self.pb2.CountResponse(tick=tick)
                if request.count == 0:
                    await asyncio.sleep(0.01)
            if request.fail_code:
                code = next(c for c in grpc.StatusCode if c.value[0] == request.fail_code)
                await abort(context, rich_status(code, "counter failed"))
        except asyncio.CancelledError:
            self.count_cancelled.set()
            raise

    async def Hidden(self, request: Any, context: Any) -> Any:
        return self.pb2.EchoResponse(request=request)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def echo_stack(echo_protos: EchoProtos) -> AsyncIterator[GatewayStack]:
    servicer = EchoServicer(echo_protos.pb2)
    add = echo_protos.pb2_grpc.add_EchoServiceServicer_to_server
    stack = GatewayStack(
        [(add, servicer)],
        services=[echo_protos.service],
        gateway_kwargs={"comments": echo_protos.comments, "heartbeat_s": 0.2},
    )
    async with running_stack(stack) as running:
        yield running
