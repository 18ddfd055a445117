"""schemathesis against /openapi.json: no 5xx, and every response fits the document.

The fake servicer answers every id (``any_id``) so generated requests reach real 200 responses
as well as the gateway's own 400s. The example count is bounded (``GATEWAY_FUZZ_EXAMPLES``,
default 25 per operation) and the run is deterministic, so it fits in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.gateway import StackThread, fake_stack  # noqa: E402

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("fuzz-media")
    (root / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with StackThread(lambda: fake_stack(files_root=root, any_id=True)) as stack:
        yield stack.http_url


def test_no_server_errors_and_responses_fit_the_schema(live_gateway):
    document = httpx.get(f"{live_gateway}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            case.call_and_validate(base_url=live_gateway, checks=CHECKS, timeout=10)

        check()
