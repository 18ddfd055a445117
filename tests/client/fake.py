"""A fake MediaGenerationService on a real loopback gRPC port, and an HTTP server for its media.

Both run in a background thread with their own event loop, so that async client tests and the
synchronous CLI (which calls ``asyncio.run`` itself) can talk to the same server.

Jobs follow a script: creating one records every event up front (PENDING, RUNNING, three
PROGRESS steps, then SUCCEEDED with media, or FAILED when the prompt contains "fail"), unless
the prompt contains "hold", which leaves the job PENDING until CancelJob. Faults are switched on
through attributes: ``unavailable_generates``, ``drop_after``, ``unavailable_watches``.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from mediagen import errors
from mediagen.v1 import job_pb2, media_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

DEFAULT_MODEL = "stability-ai/sdxl"
TERMINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED}


class MediaFiles(http.server.ThreadingHTTPServer):
    """Serves ``files[path]`` at ``path``; anything else is 404."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MediaHandler)
        self.files: dict[str, bytes] = {}
        #: The headers of every GET, lower-cased names.
        self.requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _MediaHandler(http.server.BaseHTTPRequestHandler):
    server: MediaFiles

    def do_GET(self) -> None:
        self.server.requests.append({k.lower(): v for k, v in self.headers.items()})
        body = self.server.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


async def _abort(
    context: grpc.aio.ServicerContext[object, object], error: errors.MediagenError
) -> None:
    await context.abort_with_status(rpc_status.to_status(error.to_status()))


@dataclass
class FakeService(pb_grpc.MediaGenerationServiceServicer):
    files: MediaFiles
    #: Make media URLs absolute (as S3 gives them) instead of relative to the gateway.
    absolute_urls: bool = False
    #: Fail this many GenerateMedia calls with UNAVAILABLE before serving one.
    unavailable_generates: int = 0
    #: Fail this many WatchJob calls with UNAVAILABLE (with RetryInfo) before sending anything.
    unavailable_watches: int = 0
    #: Per job: sequence numbers after which the stream is cut with UNAVAILABLE, once each.
    drop_after: dict[str, set[int]] = field(default_factory=dict)

    events: dict[str, list[job_pb2.JobEvent]] = field(default_factory=dict)
    request_ids: dict[str, str] = field(default_factory=dict)
    generate_requests: list[pb.GenerateMediaRequest] = field(default_factory=list)
    watch_requests: list[tuple[str, int]] = field(default_factory=list)
    #: (method name, metadata) of every call, retries included.
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    # -- the script

    def job(self, job_id: str) -> job_pb2.Job:
        return self.events[job_id][-1].job

    def _record(
        self,
        job: job_pb2.Job,
        kind: job_pb2.JobEventType.ValueType = job_pb2.JOB_EVENT_TYPE_STATE_CHANGED,
    ) -> None:
        events = self.events.setdefault(job.id, [])
        job.update_time.CopyFrom(_now())
        event = job_pb2.JobEvent(sequence=len(events) + 1, type=kind, time=_now())
        event.job.CopyFrom(job)
        events.append(event)

    def create_job(self, request: pb.GenerateMediaRequest) -> job_pb2.Job:
        job = job_pb2.Job(
            id=str(uuid.uuid4()),
            status=job_pb2.JOB_STATE_PENDING,
            prompt=request.prompt,
            model=request.model or DEFAULT_MODEL,
            parameters=request.parameters,
            create_time=_now(),
            labels=request.labels,
        )
        job.status_url = f"/api/v1/jobs/status/{job.id}"
        self._record(job)
        if "hold" in request.prompt:
            return job
        job.status = job_pb2.JOB_STATE_RUNNING
        job.attempt = 1
        job.start_time.CopyFrom(_now())
        self._record(job)
        for progress in (0.25, 0.5, 0.75):
            job.progress = progress
            self._record(job, job_pb2.JOB_EVENT_TYPE_PROGRESS)
        job.complete_time.CopyFrom(_now())
        if "fail" in request.prompt:
            job.status = job_pb2.JOB_STATE_FAILED
            job.error.CopyFrom(
                status_pb2.Status(code=9, message="the model failed: NSFW content detected")
            )
        else:
            job.status = job_pb2.JOB_STATE_SUCCEEDED
            job.progress = 1.0
            count = (
                request.parameters.num_outputs if request.parameters.HasField("num_outputs") else 1
            )
            job.media.extend(self._make_media(job.id, i) for i in range(count))
        self._record(job)
        return job

    def _make_media(self, job_id: str, index: int) -> media_pb2.Media:
        media_id = str(uuid.uuid4())
        body = f"fake png {media_id} ".encode() * (500 + index)
        path = f"/media/{media_id}.png"
        self.files.files[path] = body
        return media_pb2.Media(
            id=media_id,
            job_id=job_id,
            kind=media_pb2.MEDIA_KIND_IMAGE,
            mime_type="image/png",
            url=self.files.url + path if self.absolute_urls else path,
            width=64,
            height=64,
            size_bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            create_time=_now(),
        )

    def media(self, media_id: str) -> media_pb2.Media | None:
        for events in self.events.values():
            for media in events[-1].job.media:
                if media.id == media_id:
                    return media
        return None

    # -- the RPCs

    async def GenerateMedia(self, request, context):
        self.generate_requests.append(request)
        if self.unavailable_generates > 0:
            self.unavailable_generates -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the database is restarting")
        violations = []
        if not request.prompt.strip():
            violations.append(errors.FieldViolation("prompt", "must not be empty"))
        width = request.parameters.width
        if request.parameters.HasField("width") and not 64 <= width <= 4096:
            violations.append(
                errors.FieldViolation("parameters.width", "must be between 64 and 4096")
            )
        if violations:
            await _abort(context, errors.InvalidArgument(violations))
        if request.request_id in self.request_ids:
            return pb.GenerateMediaResponse(
                job=self.events[self.request_ids[request.request_id]][0].job
            )
        job = self.create_job(request)
        if request.request_id:
            self.request_ids[request.request_id] = job.id
        return pb.GenerateMediaResponse(job=self.events[job.id][0].job)

    async def GetJob(self, request, context):
        if request.id not in self.events:
            await _abort(context, errors.JobNotFound(request.id))
        return pb.GetJobResponse(job=self.job(request.id))

    async def ListJobs(self, request, context):
        jobs = [events[-1].job for events in reversed(self.events.values())]
        if request.status:
            wanted = request.status.upper().removeprefix("JOB_STATE_")
            jobs = [
                job for job in jobs if job_pb2.JobState.Name(job.status) == f"JOB_STATE_{wanted}"
            ]
        try:
            start = int(request.page_token or "0")
        except ValueError:
            await _abort(
                context,
                errors.InvalidArgument([errors.FieldViolation("page_token", "malformed")]),
            )
        size = request.page_size or 50
        page = jobs[start : start + size]
        more = start + size < len(jobs)
        return pb.ListJobsResponse(
            jobs=page, next_page_token=str(start + size) if more else "", total_size=len(jobs)
        )

    async def WatchJob(self, request, context) -> AsyncIterator[pb.WatchJobResponse]:
        self.watch_requests.append((request.id, request.after_sequence))
        if request.id not in self.events:
            await _abort(context, errors.JobNotFound(request.id))
        if self.unavailable_watches > 0:
            self.unavailable_watches -= 1
            await _abort(context, errors.Unavailable("restarting", retry_after_s=0.01))
        sent = request.after_sequence
        drops = self.drop_after.get(request.id, set())
        while True:
            events = self.events[request.id]
            for event in events[sent:]:
                yield pb.WatchJobResponse(event=event)
                sent = event.sequence
                if event.sequence in drops:
                    drops.discard(event.sequence)
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")
            if events[-1].job.status in TERMINAL:
                return
            await asyncio.sleep(0.01)  # wait for CancelJob to append an event

    async def GetMedia(self, request, context):
        media = self.media(request.id)
        if media is None:
            await _abort(context, errors.MediaNotFound(request.id))
        return pb.GetMediaResponse(media=media)

    async def CancelJob(self, request, context):
        if request.id not in self.events:
            await _abort(context, errors.JobNotFound(request.id))
        job = job_pb2.Job()
        job.CopyFrom(self.job(request.id))
        if job.status in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED):
            await _abort(
                context,
                errors.JobAlreadyFinished(
                    f"job {job.id} already {job_pb2.JobState.Name(job.status)}",
                    metadata={"id": job.id},
                ),
            )
        if job.status == job_pb2.JOB_STATE_PENDING:
            job.status = job_pb2.JOB_STATE_CANCELED
            job.complete_time.CopyFrom(_now())
            self._record(job)
        return pb.CancelJobResponse(job=job)


class _Recorder(grpc.aio.ServerInterceptor):
    """Notes each call's method and metadata (what a client sent, e.g. its authorization)."""

    def __init__(self, calls: list[tuple[str, dict[str, str]]]) -> None:
        self.calls = calls

    async def intercept_service(self, continuation, handler_call_details):
        metadata = {k: str(v) for k, v in handler_call_details.invocation_metadata or ()}
        self.calls.append((handler_call_details.method.rsplit("/", 1)[-1], metadata))
        return await continuation(handler_call_details)


class FakeServer:
    """The fake service and its media files, served from a background thread."""

    def __init__(self) -> None:
        self.files = MediaFiles()
        self.service = FakeService(self.files)
        self.target = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: grpc.aio.Server
        self._threads = [
            threading.Thread(target=self._run_grpc, name="fake-grpc", daemon=True),
            threading.Thread(
                # A short poll keeps shutdown() (and so each test's teardown) quick.
                target=self.files.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="fake-http",
                daemon=True,
            ),
        ]

    @property
    def http_url(self) -> str:
        return self.files.url

    def start(self) -> FakeServer:
        for thread in self._threads:
            thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake gRPC server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.files.shutdown()
        self.files.server_close()
        for thread in self._threads:
            thread.join(10)

    def restart(self) -> None:
        """Stop the gRPC server, cutting every open stream, and start a new one on its port."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._restart(), self._loop).result(10)

    def _run_grpc(self) -> None:
        asyncio.run(self._serve())

    async def _start(self, address: str) -> None:
        self._server = grpc.aio.server(interceptors=[_Recorder(self.service.calls)])
        pb_grpc.add_MediaGenerationServiceServicer_to_server(self.service, self._server)
        port = self._server.add_insecure_port(address)
        await self._server.start()
        self.target = f"127.0.0.1:{port}"

    async def _restart(self) -> None:
        await self._server.stop(0.1)
        await self._start(self.target)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self._start("127.0.0.1:0")
        self._ready.set()
        await self._stop.wait()
        await self._server.stop(None)
