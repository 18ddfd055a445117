"""``GET /files/{key}``: media of local storage, straight from the storage root.

Only through a signed URL (:mod:`mediagen.storage.signing`, made by
:meth:`~mediagen.storage.local.LocalStorage.url_for`): a missing, altered or expired signature is
refused (403, as S3 refuses a bad presigned URL) before the key is even looked up, so a refusal
says nothing about whether the file exists.

Keys are checked by :meth:`mediagen.storage.local.LocalStorage.path_for` (no empty, absolute or
dot-prefixed components), and the resolved file must still lie under the root, so neither
``..`` nor a symbolic link leads out of it; any bad or missing key is 404. Responses carry
Content-Type (from the key's extension), Content-Length, Last-Modified and an ETag; ``Range``
(single or multiple, with ``If-Range``) gives 206 or 416, ``If-None-Match`` gives 304.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from mediagen.gateway import asgi
from mediagen.storage import signing
from mediagen.storage.local import InvalidKey, LocalStorage

#: URL prefix of the route.
PREFIX = "/files/"


class FileNotServed(LookupError):
    """No servable file for the key (bad key, missing, not a regular file, or outside root)."""


class FileRefused(PermissionError):
    """The URL is not one the service signed, or it has expired (403)."""


class LocalFiles:
    """Serves the files under one root folder to URLs signed with ``secret_key``."""

    def __init__(
        self, root: Path, *, secret_key: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = Path(root).absolute()
        self._secret_key = secret_key
        self._clock = clock
        self._storage = LocalStorage(self.root, "", secret_key=secret_key)

    def locate(self, key: str) -> tuple[Path, os.stat_result]:
        """The file for a (percent-decoded) key and its stat; raises :class:`FileNotServed`."""
        try:
            path = self._storage.path_for(key)
        except InvalidKey as exc:
            raise FileNotServed(key) from exc
        try:
            real = path.resolve(strict=True)
            info = real.stat()
        except (OSError, RuntimeError) as exc:
            raise FileNotServed(key) from exc
        if not real.is_relative_to(self.root.resolve()) or not stat.S_ISREG(info.st_mode):
            raise FileNotServed(key)
        return real, info

    def check_signature(self, key: str, scope: Scope) -> None:
        """Raises :class:`FileRefused` unless the request's query signs ``key`` and is current."""
        try:
            signing.verify(self._secret_key, key, asgi.query_params(scope), now=self._clock())
        except signing.UrlRefused as exc:
            raise FileRefused(str(exc)) from exc

    async def serve(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a GET or HEAD for ``key``; raises :class:`FileRefused` or
        :class:`FileNotServed`."""
        self.check_signature(key, scope)
        path, info = await asyncio.to_thread(self.locate, key)
        headers = {"x-content-type-options": "nosniff"}
        response: Response = FileResponse(path, headers=headers, stat_result=info)
        etag = response.headers["etag"]
        if _matches(_header(scope, b"if-none-match"), etag):
            not_modified = {"etag": etag, "last-modified": response.headers["last-modified"]}
            response = Response(status_code=304, headers=not_modified)
        await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison of an ``If-None-Match`` list with our ETag (RFC 9110 13.1.2)."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = (t.strip().removeprefix("W/") for t in if_none_match.split(","))
    return etag in tags
