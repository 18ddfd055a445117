"""MediagenClient against the fake service over a real loopback gRPC channel."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import textwrap
import uuid
from pathlib import Path

import grpc
import pytest

from mediagen import client as client_module
from mediagen.client import (
    DownloadError,
    FailedPreconditionError,
    FieldViolation,
    IntegrityError,
    InvalidArgumentError,
    MediagenClient,
    NotFoundError,
    RetryPolicy,
    UnavailableError,
)
from mediagen.v1 import job_pb2, media_pb2
from tests.client.conftest import NO_WAIT

SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED


async def _finished(client: MediagenClient, prompt: str = "a red fox", **kwargs: object):
    job = await client.generate(prompt, **kwargs)  # type: ignore[arg-type]
    return await client.wait(job.id)


# -- generate


async def test_generate_sends_typed_parameters_and_a_fresh_request_id(client, fake):
    job = await client.generate(
        "a red fox",
        model="owner/model",
        parameters={"width": "512", "output_format": "jpg", "lora_scale": 0.6},
        labels={"team": "ads"},
    )

    assert job.status == job_pb2.JOB_STATE_PENDING
    sent = fake.service.generate_requests[-1]
    assert sent.parameters.width == 512
    assert sent.parameters.output_format == job_pb2.OUTPUT_FORMAT_JPEG
    assert sent.parameters.extra_input["lora_scale"] == 0.6
    assert sent.labels == {"team": "ads"}
    assert uuid.UUID(sent.request_id).version == 4


async def test_generate_retries_unavailable_with_the_same_request_id(client, fake):
    fake.service.unavailable_generates = 2

    job = await client.generate("a red fox")

    ids = {request.request_id for request in fake.service.generate_requests}
    assert len(fake.service.generate_requests) == 3
    assert len(ids) == 1
    assert fake.service.request_ids == {ids.pop(): job.id}


async def test_generate_gives_up_after_the_policy_and_keeps_the_cause(fake):
    fake.service.unavailable_generates = 10
    async with MediagenClient(fake.target, retry=RetryPolicy(attempts=2, initial_s=0)) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.generate("a red fox")

    assert len(fake.service.generate_requests) == 2
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.message == "the database is restarting"
    assert isinstance(caught.value.__cause__, grpc.aio.AioRpcError)


async def test_invalid_argument_carries_the_decoded_field_violations(client, fake):
    with pytest.raises(InvalidArgumentError) as caught:
        await client.generate(" ", parameters={"width": 100_000})

    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert error.domain == "mediagen.dev"
    assert error.field_violations == (
        FieldViolation("prompt", "must not be empty"),
        FieldViolation("parameters.width", "must be between 64 and 4096"),
    )
    assert error.status is not None and len(error.status.details) == 2
    assert len(fake.service.generate_requests) == 1  # a caller error is not retried
    assert str(error).startswith("INVALID_ARGUMENT: invalid request: prompt: must not be empty")


async def test_unreachable_server_is_unavailable_without_error_info():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with MediagenClient(f"127.0.0.1:{port}", retry=NO_WAIT, timeout_s=5) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.get("x")
    assert caught.value.reason == ""
    assert caught.value.status is None


# -- get, list, cancel, media


async def test_get_unknown_job_is_not_found_with_its_reason(client):
    with pytest.raises(NotFoundError) as caught:
        await client.get("nope")
    assert caught.value.reason == "JOB_NOT_FOUND"
    assert caught.value.error_metadata == {"id": "nope"}


async def test_list_pages_and_iter_jobs_walks_them_all(client):
    ids = [(await client.generate(f"fox {i}")).id for i in range(5)]

    first = await client.list(page_size=2)
    every = [job.id async for job in client.iter_jobs(page_size=2)]
    succeeded = await client.list(status=SUCCEEDED)
    by_word = await client.list(status="succeeded")

    assert [job.id for job in first.jobs] == ids[::-1][:2]
    assert first.next_page_token and first.total_size == 5
    assert every == ids[::-1]
    assert succeeded.total_size == by_word.total_size == 5


async def test_malformed_page_token_is_invalid_argument(client):
    with pytest.raises(InvalidArgumentError) as caught:
        await client.list(page_token="garbage")
    assert [v.field for v in caught.value.field_violations] == ["page_token"]


async def test_cancel_pending_job_and_refuse_a_finished_one(client):
    held = await client.generate("hold this")
    canceled = await client.cancel(held.id)
    done = await _finished(client)

    with pytest.raises(FailedPreconditionError) as caught:
        await client.cancel(done.id)

    assert canceled.status == job_pb2.JOB_STATE_CANCELED
    assert (await client.wait(held.id)).status == job_pb2.JOB_STATE_CANCELED
    assert caught.value.reason == "JOB_ALREADY_FINISHED"


async def test_get_media(client):
    job = await _finished(client)
    media = await client.get_media(job.media[0].id)
    assert media == job.media[0]
    with pytest.raises(NotFoundError):
        await client.get_media("nope")


# -- watch


async def test_watch_yields_every_event_in_order_and_ends_after_the_terminal_one(client):
    job = await client.generate("a red fox")

    events = [event async for event in client.watch(job.id)]

    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.job.status for e in events][:2] == [
        job_pb2.JOB_STATE_PENDING,
        job_pb2.JOB_STATE_RUNNING,
    ]
    progress = [e.job.progress for e in events[1:]]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert events[-1].job.status == SUCCEEDED


async def test_watch_resumes_after_drops_from_the_last_sequence_and_misses_nothing(client, fake):
    job = await client.generate("a red fox")
    fake.service.drop_after[job.id] = {2, 4}

    events = [event async for event in client.watch(job.id)]

    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
    assert fake.service.watch_requests == [(job.id, 0), (job.id, 2), (job.id, 4)]


async def test_watch_resumes_across_a_real_server_restart(client, fake):
    job = await client.generate("hold on")
    seen = []
    async for event in client.watch(job.id):
        seen.append((event.sequence, event.job.status))
        if event.sequence == 1:
            # The restart cuts this stream with UNAVAILABLE; the cancel lands on the new server.
            await asyncio.to_thread(fake.restart)
            await client.cancel(job.id)

    assert seen == [(1, job_pb2.JOB_STATE_PENDING), (2, job_pb2.JOB_STATE_CANCELED)]
    assert fake.service.watch_requests == [(job.id, 0), (job.id, 1)]


async def test_watch_honours_retry_info_and_gives_up_when_nothing_gets_through(fake):
    fake.service.unavailable_watches = 3
    async with MediagenClient(fake.target, retry=RetryPolicy(attempts=3, initial_s=0)) as client:
        job = await client.generate("a red fox")
        with pytest.raises(UnavailableError) as caught:
            _ = [event async for event in client.watch(job.id)]
    assert caught.value.retry_after_s == pytest.approx(0.01)
    assert len(fake.service.watch_requests) == 3


async def test_watch_after_sequence_replays_only_later_events(client):
    job = await _finished(client)

    later = [event.sequence async for event in client.watch(job.id, after_sequence=4)]
    nothing = [event async for event in client.watch(job.id, after_sequence=6)]

    assert later == [5, 6]
    assert nothing == []


async def test_watch_unknown_job_is_not_found(client):
    with pytest.raises(NotFoundError):
        _ = [event async for event in client.watch("nope")]


async def test_leaving_watch_early_cancels_the_stream(client):
    job = await client.generate("hold on")
    async for event in client.watch(job.id):
        assert event.sequence == 1
        break
    assert (await client.cancel(job.id)).status == job_pb2.JOB_STATE_CANCELED


async def test_wait_returns_the_finished_job(client):
    job = await _finished(client, "please fail")
    assert job.status == job_pb2.JOB_STATE_FAILED
    assert "NSFW" in job.error.message


# -- download


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-url", "absolute-url"])
async def test_download_writes_the_verified_file(client, fake, tmp_path, absolute):
    fake.service.absolute_urls = absolute
    job = await _finished(client, parameters={"num_outputs": 2})

    paths = [await client.download(media, tmp_path / "out") for media in job.media]

    assert [p.name for p in paths] == [f"{m.id}.png" for m in job.media]
    for path, media in zip(paths, job.media, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == media.sha256
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


@pytest.mark.parametrize(
    ("tamper", "complaint"),
    [
        (lambda body: body[:-1] + b"!", "sha256 is"),
        (lambda body: body[:-10], "expected"),
        (lambda body: body + b"more", "more than the"),
    ],
    ids=["same-size-other-bytes", "short", "long"],
)
async def test_download_detects_a_mismatch_and_leaves_nothing(
    client, fake, tmp_path, tamper, complaint
):
    media = (await _finished(client)).media[0]
    path = media.url
    fake.files.files[path] = tamper(fake.files.files[path])

    with pytest.raises(IntegrityError, match=complaint):
        await client.download(media, tmp_path)

    assert list(tmp_path.iterdir()) == []


async def test_download_http_error_is_a_download_error(client, tmp_path):
    media = media_pb2.Media(id="m1", mime_type="image/webp", url="/media/missing.webp")
    with pytest.raises(DownloadError, match="HTTP 404"):
        await client.download(media, tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_download_refuses_relative_urls_without_a_base_and_unsafe_ids(fake, tmp_path):
    async with MediagenClient(fake.target) as client:
        with pytest.raises(DownloadError, match="relative"):
            await client.download(media_pb2.Media(id="m1", url="/media/x.png"), tmp_path)
        with pytest.raises(DownloadError, match="file name"):
            await client.download(media_pb2.Media(id="../evil", url="http://x/y"), tmp_path)


# -- channel ownership


async def test_a_channel_handed_in_is_left_open(fake):
    channel = grpc.aio.insecure_channel(fake.target)
    async with MediagenClient(channel=channel, retry=NO_WAIT) as client:
        await client.generate("a red fox")
    async with MediagenClient(channel=channel, retry=NO_WAIT) as client:
        assert (await client.list()).total_size == 1
    await channel.close()


# -- the documentation


async def test_the_module_docstring_example_runs(fake, tmp_path, monkeypatch, capsys):
    """The usage example in mediagen/client.py is run here, so it cannot rot."""
    fake.service.absolute_urls = True  # the example sets no http_base_url
    monkeypatch.chdir(tmp_path)
    assert client_module.__doc__ is not None
    example = client_module.__doc__.split("Usage::\n\n", 1)[1].split("\n\n", 1)[0]
    source = textwrap.dedent(example).replace("127.0.0.1:50051", fake.target)
    namespace: dict[str, object] = {"MediagenClient": MediagenClient, "Path": Path}
    exec("async def example():\n" + textwrap.indent(source, "    "), namespace)

    await namespace["example"]()  # type: ignore[operator]

    assert len(capsys.readouterr().out.splitlines()) == 6  # one line per event
    assert len(list((tmp_path / "out").iterdir())) == 1
