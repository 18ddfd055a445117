"""The ``mediagen`` client commands, run in-process against the fake service."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from mediagen.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from mediagen.v1 import media_generation_service_pb2 as pb
from tests.client.fake import FakeServer


class Run:
    """``main([...])`` against the fake server, returning (exit status, stdout, stderr)."""

    def __init__(self, fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
        self.fake = fake
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main(["--target", self.fake.target, "--http-url", self.fake.http_url, *argv])
        out, err = self.capsys.readouterr()
        return status, out, err

    def job(self, prompt: str = "a red fox") -> str:
        """Submit a job straight to the fake; return its id."""
        return self.fake.service.create_job(pb.GenerateMediaRequest(prompt=prompt)).id


@pytest.fixture
def run(fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(fake, capsys)


# -- generate


def test_generate_prints_the_job_id_and_status_url(run, fake):
    status, out, _ = run("generate", "a red fox", "--param", "width=512", "--label", "team=ads")

    (job_id,) = fake.service.events
    assert status == EXIT_OK
    assert out.splitlines() == [
        f"Submitted job {job_id} (PENDING)",
        f"Status: {fake.http_url}/api/v1/jobs/status/{job_id}",
    ]
    request = fake.service.generate_requests[0]
    assert request.parameters.width == 512
    assert request.labels == {"team": "ads"}


def test_x_request_id_goes_with_every_call_of_the_command(run, fake):
    status, _, err = run("generate", "a red fox", "--watch", "--x-request-id", "owl-42")
    assert status == EXIT_OK, err
    sent = [(method, metadata.get("x-request-id")) for method, metadata in fake.service.calls]
    assert sent == [("GenerateMedia", "owl-42"), ("WatchJob", "owl-42")]
    assert run("jobs", "list")[0] == EXIT_OK
    assert "x-request-id" not in fake.service.calls[-1][1]  # none unless asked for


def test_generate_watch_out_shows_progress_and_saves_every_media(run, fake, tmp_path):
    out_dir = tmp_path / "out"

    status, out, err = run(
        "generate", "a red fox", "--param", "num_outputs=2", "--watch", "--out", str(out_dir)
    )

    assert status == EXIT_OK, err
    (job_id,) = fake.service.events
    job = fake.service.job(job_id)
    saved = [Path(line.removeprefix("Saved ")) for line in out.splitlines() if "Saved" in line]
    assert saved == [out_dir / f"{media.id}.png" for media in job.media]
    for path, media in zip(saved, job.media, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == media.sha256
    assert f"Job {job_id} SUCCEEDED" in out
    assert "SUCCEEDED" in err and "100%|" in err  # the bar's last state
    assert "Traceback" not in err


def test_generate_out_without_watch_waits_quietly(run, tmp_path):
    status, out, err = run("generate", "a red fox", "--out", str(tmp_path))

    assert status == EXIT_OK
    assert len(list(tmp_path.iterdir())) == 1
    assert "Saved" in out
    assert "%|" not in err  # no bar


def test_generate_json_prints_only_the_job_on_stdout(run, fake):
    status, out, err = run("generate", "a red fox", "--json", "--watch")

    assert status == EXIT_OK
    job = json.loads(out)
    assert job["status"] == "JOB_STATE_SUCCEEDED"
    assert job["statusUrl"].endswith(job["id"])
    assert "Submitted job" in err


def test_generate_watch_of_a_failing_job_exits_non_zero_with_the_error(run):
    status, _, err = run("generate", "please fail", "--watch")

    assert status == EXIT_FAILED
    assert "FAILED: the model failed: NSFW content detected" in err
    assert "Traceback" not in err


def test_generate_invalid_argument_is_one_line_listing_the_fields(run):
    status, out, err = run("generate", " ", "--param", "width=100000")

    assert status == EXIT_FAILED
    assert out == ""
    assert err.strip().splitlines() == [
        "mediagen: error: invalid argument: invalid request: prompt: must not be empty; "
        "parameters.width: must be between 64 and 4096"
    ]


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--param", "width=wide"], "--param width: expected an integer, got 'wide'"),
        (["--param", "output_format=gif"], "--param output_format: expected one of"),
        (["--param", "nokey"], "--param expected KEY=VALUE, got 'nokey'"),
        (["--label", "team"], "--label expects KEY=VALUE, got 'team'"),
    ],
)
def test_generate_bad_flags_are_usage_errors_before_any_call(run, fake, argv, complaint):
    status, _, err = run("generate", "a red fox", *argv)

    assert status == EXIT_USAGE
    assert complaint in err
    assert fake.service.generate_requests == []


def test_no_server_says_how_to_start_one(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    status = main(["--target", f"127.0.0.1:{port}", "generate", "a red fox"])

    err = capsys.readouterr().err
    assert status == EXIT_FAILED
    assert err.startswith(f"mediagen: error: cannot reach the server at 127.0.0.1:{port}")
    assert "start it with `mediagen serve`" in err
    assert len(err.strip().splitlines()) == 1


# -- jobs


def test_jobs_list_prints_a_table(run):
    ids = [run.job(f"fox {i}") for i in range(3)]

    status, out, _ = run("jobs", "list")

    lines = out.splitlines()
    assert status == EXIT_OK
    assert lines[0].split() == ["ID", "STATUS", "PROGRESS", "MODEL", "CREATED"]
    assert [line.split()[0] for line in lines[1:4]] == ids[::-1]
    assert lines[1].split()[1:4] == ["SUCCEEDED", "100%", "stability-ai/sdxl"]
    assert lines[-1] == "3 of 3 jobs"


def test_jobs_list_pages_filters_and_json(run):
    for i in range(3):
        run.job(f"fox {i}")
    run.job("hold")

    _, paged, _ = run("jobs", "list", "--page-size", "2")
    _, pending, _ = run("jobs", "list", "--status", "pending", "--json")

    assert "2 of 4 jobs" in paged
    more = (
        f"more: mediagen jobs list --page-size 2 --target {run.fake.target} "
        f"--http-url {run.fake.http_url} --page-token 2"
    )
    assert more in paged.splitlines()
    listing = json.loads(pending)
    assert [job["status"] for job in listing["jobs"]] == ["JOB_STATE_PENDING"]
    assert listing["totalSize"] == 1


def test_jobs_get_text_and_json(run, fake):
    job_id = run.job()

    _, text, _ = run("jobs", "get", job_id)
    _, as_json, _ = run("jobs", "get", job_id, "--json")

    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    assert fields["id"].strip() == job_id
    assert fields["status"].strip() == "SUCCEEDED"
    assert fields["status url"].strip() == f"{fake.http_url}/api/v1/jobs/status/{job_id}"
    media = fake.service.job(job_id).media[0]
    line = f"  media {media.id}  image/png  64x64  {media.size_bytes} bytes  {fake.http_url}/media/"
    assert line in text
    assert json.loads(as_json)["id"] == job_id


def test_jobs_get_of_a_failed_job_shows_its_error(run):
    _, text, _ = run("jobs", "get", run.job("please fail"))
    assert "error:      FAILED_PRECONDITION: the model failed: NSFW content detected" in text


def test_jobs_get_unknown_is_not_found(run):
    status, out, err = run("jobs", "get", "nope")
    assert out == ""

    assert status == EXIT_FAILED
    assert err == "mediagen: error: not found: job 'nope' not found\n"


def test_jobs_cancel(run):
    held = run.job("hold")
    done = run.job()

    cancelled = run("jobs", "cancel", held)
    refused = run("jobs", "cancel", done)

    assert cancelled == (EXIT_OK, f"Job {held} CANCELED\n", "")
    assert refused[0] == EXIT_FAILED
    assert refused[2].startswith("mediagen: error: failed precondition: job ")


def test_jobs_watch_prints_one_line_per_event(run):
    job_id = run.job()

    status, out, _ = run("jobs", "watch", job_id)
    _, later, _ = run("jobs", "watch", job_id, "--after", "4")
    _, as_json, _ = run("jobs", "watch", job_id, "--after", "5", "--json")

    lines = out.splitlines()
    assert status == EXIT_OK
    assert [line.split()[0] for line in lines] == ["#1", "#2", "#3", "#4", "#5", "#6"]
    assert lines[0].split()[-3:] == ["STATE_CHANGED", "PENDING", "0%"]
    assert lines[3].split()[-3:] == ["PROGRESS", "RUNNING", "50%"]
    assert [line.split()[0] for line in later.splitlines()] == ["#5", "#6"]
    assert json.loads(as_json)["sequence"] == "6"


def test_jobs_watch_of_a_failed_job_exits_non_zero(run):
    job_id = run.job("please fail")

    status, _, err = run("jobs", "watch", job_id, "--after", "6")

    assert status == EXIT_FAILED
    assert "FAILED: the model failed" in err


# -- media


def test_media_get_and_download(run, fake, tmp_path):
    media = fake.service.job(run.job()).media[0]

    status, out, err = run("media", "get", media.id, "--out", str(tmp_path))

    assert status == EXIT_OK, err
    assert f"sha256:    {media.sha256}\n" in out
    assert (tmp_path / f"{media.id}.png").stat().st_size == media.size_bytes


def test_download_mismatch_is_reported(run, fake, tmp_path):
    media = fake.service.job(run.job()).media[0]
    fake.files.files[media.url] = b"tampered"

    status, _, err = run("media", "get", media.id, "--out", str(tmp_path))

    assert status == EXIT_FAILED
    assert err.startswith(f"mediagen: error: download failed: media {media.id}: got 8 bytes")
