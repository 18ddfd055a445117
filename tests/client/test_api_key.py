"""The client's api_key: on every call (unary, stream, retries), on downloads from the gateway
only, and the CLI's --api-key / MEDIAGEN_API_KEY."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from mediagen.cli import EXIT_OK, main
from mediagen.client import MediagenClient
from mediagen.v1 import media_pb2
from tests.client.conftest import NO_WAIT
from tests.client.fake import FakeServer, MediaFiles

KEY = "mg_0123456789ab_" + "s" * 43
BEARER = f"Bearer {KEY}"


def _auth(fake: FakeServer) -> list[tuple[str, str | None]]:
    return [(method, metadata.get("authorization")) for method, metadata in fake.service.calls]


async def test_every_call_and_retry_carries_the_key(fake: FakeServer, tmp_path: Path) -> None:
    fake.service.unavailable_generates = 2
    fake.service.unavailable_watches = 1
    async with MediagenClient(
        fake.target, retry=NO_WAIT, http_base_url=fake.http_url, api_key=KEY
    ) as client:
        job = await client.generate("a red fox")
        finished = await client.wait(job.id)
        await client.get(job.id)
        await client.list()
        path = await client.download(finished.media[0], tmp_path)

    assert _auth(fake) == [
        ("GenerateMedia", BEARER),
        ("GenerateMedia", BEARER),
        ("GenerateMedia", BEARER),
        ("WatchJob", BEARER),
        ("WatchJob", BEARER),
        ("GetJob", BEARER),
        ("ListJobs", BEARER),
    ]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == finished.media[0].sha256
    assert fake.files.requests[-1]["authorization"] == BEARER


async def test_no_key_no_authorization(fake: FakeServer) -> None:
    async with MediagenClient(fake.target, retry=NO_WAIT) as client:
        await client.list()
    assert _auth(fake) == [("ListJobs", None)]


async def test_the_key_never_goes_to_another_host(fake: FakeServer, tmp_path: Path) -> None:
    elsewhere = MediaFiles()  # another origin, as S3 or a CDN is
    thread = threading.Thread(target=elsewhere.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        body = b"bytes from a bucket"
        elsewhere.files["/bucket/x.png"] = body
        media = media_pb2.Media(
            id="x",
            mime_type="image/png",
            url=elsewhere.url + "/bucket/x.png",
            size_bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
        )
        async with MediagenClient(fake.target, http_base_url=fake.http_url, api_key=KEY) as c:
            await c.download(media, tmp_path)
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()
        thread.join(10)
    assert elsewhere.requests and "authorization" not in elsewhere.requests[0]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_cli_sends_the_key(
    fake: FakeServer, how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = ["--api-key", KEY] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("MEDIAGEN_API_KEY", KEY)
    assert main(["--target", fake.target, *flag, "jobs", "list"]) == EXIT_OK
    assert main(["jobs", "list", "--target", fake.target, *flag]) == EXIT_OK
    assert _auth(fake) == [("ListJobs", BEARER), ("ListJobs", BEARER)]
    assert KEY not in capsys.readouterr().out
