"""Property tests (hypothesis) against the real embedded service: whatever a caller sends, over
a real gRPC channel or real HTTP, the answer is never INTERNAL or UNKNOWN (never a 5xx), and
every INVALID_ARGUMENT carries a BadRequest whose violations name a field.

Inputs: non-finite numbers anywhere, huge and deep Structs (past protobuf's recursion limit
too), long and odd strings (NUL, lone surrogates over JSON, every plane), labels, unknown
enum values, out-of-range integers; over HTTP also bodies that are not UTF-8 or not JSON. Jobs
that are accepted are cancelled at once, so the worker does not render them.

Bounded for a loaded 2-core machine: ``FUZZ_EXAMPLES`` examples per property (default 150),
deterministic (``derandomize``). Each test prints how many cases it ran, by outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediagen.embedded import Embedded
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import TEST_MODELS, embedded_settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


class ServiceThread:
    """The embedded service in its own thread and event loop, so hypothesis (synchronous)
    can call it through ordinary blocking clients."""

    def __init__(self, data_dir: Path) -> None:
        self.app = Embedded(embedded_settings(data_dir))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def __enter__(self) -> Embedded:
        self._thread.start()
        self._run(self.app.start())
        return self.app

    def __exit__(self, *exc: object) -> None:
        self._run(self.app.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    with ServiceThread(tmp_path_factory.mktemp("fuzz") / "data") as app:
        yield app


@pytest.fixture(scope="module")
def stub(service: Embedded) -> Iterator[Any]:
    """A blocking stub (typed Any: the generated stubs describe the aio flavour only)."""
    with grpc.insecure_channel(service.grpc_target) as channel:
        yield pb_grpc.MediaGenerationServiceStub(channel)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def http(service: Embedded) -> Iterator[httpx.Client]:
    base = f"http://{service.settings.host}:{service.http_port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        yield client


# --- strategies -----------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["", " ", "\x00", "a\x00b", "🦊" * 50, "x" * 5000, "../../etc", "%00"]),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -0.0]),
)
json_leaf = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(odd_text, children, max_size=4)
    ),
    max_leaves=30,
)


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep_values = st.builds(nested, st.integers(0, 130), json_leaf)
wide_values = st.builds(
    lambda n, v: {f"k{i}": v for i in range(n)}, st.integers(0, 3000), json_leaf
)
extra_inputs = st.dictionaries(odd_text, st.one_of(json_values, deep_values), max_size=5) | (
    wide_values
)
int32s = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(0, 300))
parameters = st.fixed_dictionaries(
    {},
    optional={
        "width": int32s,
        "height": int32s,
        "num_outputs": int32s,
        "num_inference_steps": int32s,
        "guidance_scale": st.floats(allow_nan=True, allow_infinity=True),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "negative_prompt": odd_text,
        "output_format": st.integers(0, 2**31 - 1),
        "extra_input": extra_inputs,
    },
)
requests = st.fixed_dictionaries(
    {"prompt": odd_text},
    optional={
        "model": st.one_of(odd_text, st.sampled_from(TEST_MODELS)),
        "parameters": parameters,
        "request_id": st.one_of(odd_text, st.uuids().map(str)),
        "labels": st.dictionaries(odd_text, odd_text, max_size=40),
    },
)


def to_request(fields: dict[str, Any]) -> pb.GenerateMediaRequest | None:
    """The proto for generated fields; None if protobuf itself cannot hold them (surrogates)."""
    fields = dict(fields)
    params = dict(fields.pop("parameters", {}))
    extra = params.pop("extra_input", None)
    try:
        message = pb.GenerateMediaRequest(
            **fields, parameters=job_pb2.GenerationParameters(**params)
        )
        if extra is not None:
            holder = struct_pb2.Struct()
            holder.update(extra)
            message.parameters.extra_input.CopyFrom(holder)
    except (ValueError, TypeError, RecursionError):
        return None
    return message


# --- checks ---------------------------------------------------------------------------------


def bad_request_fields(details: bytes | None) -> list[str]:
    assert details is not None, "INVALID_ARGUMENT without a google.rpc.Status"
    fields: list[str] = []
    for detail in status_pb2.Status.FromString(details).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


def check_rpc(outcomes: Counter[str], call: Callable[[], Any]) -> Any:
    try:
        result = call()
    except grpc.RpcError as raised:
        exc: Any = raised  # a grpc.Call as well
        code = exc.code()
        outcomes[code.name] += 1
        assert code not in NEVER, exc.details()
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            trailers = dict(exc.trailing_metadata() or ())
            fields = bad_request_fields(trailers.get("grpc-status-details-bin"))
            assert fields and all(fields), exc.details()
        return None
    outcomes["OK"] += 1
    return result


# --- gRPC -----------------------------------------------------------------------------------


def test_generate_media_over_grpc(stub: Any) -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(fields=requests)
    def check(fields: dict[str, Any]) -> None:
        request = to_request(fields)
        if request is None:
            outcomes["unrepresentable"] += 1
            return
        created = check_rpc(outcomes, lambda: stub.GenerateMedia(request, timeout=30))
        if created is not None:  # keep the worker idle: cancel before it renders anything
            stub.CancelJob(pb.CancelJobRequest(id=created.job.id), timeout=30)

    check()
    print(f"\nGenerateMedia over gRPC: {sum(outcomes.values())} cases {dict(outcomes)}")
    assert outcomes["INVALID_ARGUMENT"] > 0 and outcomes["OK"] > 0


def test_other_rpcs_over_grpc(stub: Any) -> None:
    outcomes: Counter[str] = Counter()
    int32 = st.integers(-(2**31), 2**31 - 1)
    calls = st.one_of(
        st.builds(lambda i: lambda: stub.GetJob(pb.GetJobRequest(id=i), timeout=30), odd_text),
        st.builds(lambda i: lambda: stub.GetMedia(pb.GetMediaRequest(id=i), timeout=30), odd_text),
        st.builds(
            lambda i: lambda: stub.CancelJob(pb.CancelJobRequest(id=i), timeout=30), odd_text
        ),
        st.builds(
            lambda s, t, n, p, q: (
                lambda: stub.ListJobs(
                    pb.ListJobsRequest(status=s, page_token=t, page_size=n, page=p, per_page=q),
                    timeout=30,
                )
            ),
            odd_text,
            odd_text,
            int32,
            int32,
            int32,
        ),
        st.builds(
            lambda i, a: (
                lambda: list(stub.WatchJob(pb.WatchJobRequest(id=i, after_sequence=a), timeout=30))
            ),
            odd_text,
            st.integers(-(2**63), 2**63 - 1),
        ),
    )

    @FUZZ
    @given(call=calls)
    def check(call: Callable[[], Any]) -> None:
        check_rpc(outcomes, call)

    check()
    print(f"\nGet/List/Cancel/Watch over gRPC: {sum(outcomes.values())} cases {dict(outcomes)}")
    assert outcomes["INVALID_ARGUMENT"] > 0 and outcomes["NOT_FOUND"] > 0


# --- HTTP -----------------------------------------------------------------------------------

JSON_BODIES = st.builds(
    lambda fields: json.dumps(fields, allow_nan=True).encode("utf-8", "surrogatepass"),
    requests,
)
RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b'{"prompt": "\xff"}',
            b'{"prompt": "\xed\xa0\x80"}',
            b'{"prompt": "a", "parameters": {"width": ' + b"9" * 5000 + b"}}",
            b"[" * 5000,
            b'{"prompt": "a", "parameters": {"extraInput": {"a": 1e400}}}',
            b'{"prompt": "a", "parameters": {"guidanceScale": "NaN"}}',
            b'{"prompt": "a", "parameters": []}',
            b'{"prompt": {"a": 1}}',
            b'"just a string"',
        ]
    ),
)


def test_generate_media_over_http(http: httpx.Client) -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(body=st.one_of(JSON_BODIES, RAW_BODIES))
    def check(body: bytes) -> None:
        response = http.post(
            "/api/v1/jobs/generate", content=body, headers={"Content-Type": "application/json"}
        )
        outcomes[str(response.status_code)] += 1
        assert response.status_code < 500, response.text
        payload = response.json()
        if response.status_code == 200:
            http.post(f"/api/v1/jobs/{payload['id']}:cancel")
            return
        assert response.status_code in (400, 404, 409), response.text
        if payload["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]:
            fields = [
                violation["field"]
                for detail in payload["details"]
                if detail["@type"].endswith("google.rpc.BadRequest")
                for violation in detail["fieldViolations"]
            ]
            assert fields and all(fields), response.text

    check()
    print(f"\nGenerateMedia over HTTP: {sum(outcomes.values())} cases {dict(outcomes)}")
    assert outcomes["400"] > 0 and outcomes["200"] > 0
