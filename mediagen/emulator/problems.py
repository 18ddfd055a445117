"""Replicate's error bodies: RFC 7807 problem details (``title``, ``detail``, ``status``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raised by handlers; the app answers it as a problem-details response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.detail, "status": self.status}
        if self.title is not None:
            body["title"] = self.title
        return {**body, **self.extra}

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body(), status_code=self.status, headers=self.headers, media_type=_MEDIA_TYPE
        )


def not_found() -> Problem:
    return Problem(404, "The requested resource could not be found.")


def throttled(retry_after_s: int, *, header: bool) -> Problem:
    """A 429 as Replicate sends it; the ``Retry-After`` header is undocumented, so optional."""
    return Problem(
        429,
        f"Request was throttled. Your rate limit resets in ~{retry_after_s}s.",
        title="Too Many Requests",
        headers={"Retry-After": str(retry_after_s)} if header else None,
        retry_after=retry_after_s,
    )


_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def server_error(status: int) -> Problem:
    return Problem(status, "An injected server error.", title=_REASONS.get(status, "Server Error"))
