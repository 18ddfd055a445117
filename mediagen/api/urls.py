"""Public URLs for media on the way out of the API (see :mod:`mediagen.jobs.convert`)."""

from __future__ import annotations

from mediagen.storage.base import Storage
from mediagen.v1 import job_pb2, media_pb2


async def resolve_media(media: media_pb2.Media, storage: Storage) -> media_pb2.Media:
    """Replace the storage key in ``media.url`` with a URL clients can fetch."""
    if media.url:
        media.url = await storage.url_for(media.url)
    return media


async def resolve_job(job: job_pb2.Job, storage: Storage) -> job_pb2.Job:
    for media in job.media:
        await resolve_media(media, storage)
    return job
