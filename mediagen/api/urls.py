"""Public URLs for media on the way out of the API (see :mod:`mediagen.jobs.convert`).

Each function returns a new message and leaves its argument alone: a job or event may be shared
(the event bus hands one object to every watcher in the process), and a shared message rewritten
in place would give the next reader a URL where it expects a storage key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from google.protobuf.message import Message

from mediagen.storage.base import Storage
from mediagen.v1 import job_pb2, media_pb2

_M = TypeVar("_M", bound=Message)


def _copy(message: _M) -> _M:
    copied = type(message)()
    copied.CopyFrom(message)
    return copied


async def _resolve_copies(media: Iterable[media_pb2.Media], storage: Storage) -> None:
    """Replace each storage key with its URL; only ever called on our own copies."""
    for item in media:
        if item.url:
            item.url = await storage.url_for(item.url)


async def resolve_media(media: media_pb2.Media, storage: Storage) -> media_pb2.Media:
    """A copy of ``media`` whose ``url`` is a URL clients can fetch, not the storage key."""
    resolved = _copy(media)
    await _resolve_copies([resolved], storage)
    return resolved


async def resolve_job(job: job_pb2.Job, storage: Storage) -> job_pb2.Job:
    """A copy of ``job`` with its media resolved."""
    resolved = _copy(job)
    await _resolve_copies(resolved.media, storage)
    return resolved


async def resolve_event(event: job_pb2.JobEvent, storage: Storage) -> job_pb2.JobEvent:
    """A copy of ``event`` with its job's media resolved."""
    resolved = _copy(event)
    await _resolve_copies(resolved.job.media, storage)
    return resolved
