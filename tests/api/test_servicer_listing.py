"""ListJobs filters in the servicer, on SQLite and PostgreSQL: a page token is good only for the
filter it was issued with, and every bad filter field is named in one INVALID_ARGUMENT."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mediagen.api.servicer import MediaGenerationServicer
from mediagen.v1 import media_generation_service_pb2 as pb
from tests.api.test_servicer_tenancy import (  # noqa: F401 (fixtures)
    ALICE,
    Aborted,
    bus,
    call,
    generate,
    servicer,
    store,
)


async def test_page_tokens_are_bound_to_the_time_and_model_filters(
    servicer: MediaGenerationServicer,  # noqa: F811 (the imported fixture)
) -> None:
    jobs = [await generate(servicer, ALICE, f"fox {i}") for i in range(3)]
    after = jobs[1].create_time
    model = jobs[0].model

    def request(page_token: str = "") -> pb.ListJobsRequest:
        return pb.ListJobsRequest(
            model=model, created_after=after, page_size=1, page_token=page_token
        )

    first = await call(servicer, ALICE, "ListJobs", request())
    assert [j.id for j in first.jobs] == [jobs[2].id] and first.total_size == 2
    second = await call(servicer, ALICE, "ListJobs", request(first.next_page_token))
    assert [j.id for j in second.jobs] == [jobs[1].id] and second.next_page_token == ""

    moved = Timestamp()
    moved.FromDatetime(after.ToDatetime() + timedelta(microseconds=1))
    for changed in (
        pb.ListJobsRequest(model=model, created_after=moved, page_token=first.next_page_token),
        pb.ListJobsRequest(created_after=after, page_token=first.next_page_token),
    ):
        with pytest.raises(Aborted) as err:
            await call(servicer, ALICE, "ListJobs", changed)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token: was issued for a different filter" in err.value.details


async def test_bad_filters_are_named_together(
    servicer: MediaGenerationServicer,  # noqa: F811 (the imported fixture)
) -> None:
    request = pb.ListJobsRequest(
        status="sleeping",
        model="Not A Model",
        created_after=Timestamp(seconds=10**12),
        created_before=Timestamp(seconds=5, nanos=-1),
        page_size=-1,
    )
    with pytest.raises(Aborted) as err:
        await call(servicer, ALICE, "ListJobs", request)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    for field in ("status", "model", "created_after", "created_before", "page_size"):
        assert f"{field}: " in err.value.details

    backwards = pb.ListJobsRequest(
        created_after=Timestamp(seconds=100), created_before=Timestamp(seconds=100)
    )
    with pytest.raises(Aborted) as err:
        await call(servicer, ALICE, "ListJobs", backwards)
    assert "created_before: must be later than created_after" in err.value.details
