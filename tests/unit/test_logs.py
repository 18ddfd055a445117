"""Log lines: the JSON and text formats, the context they carry, request ids, and the loggers
whose per-request lines are DEBUG."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from mediagen.config import ConfigError, Settings
from mediagen.gateway.request_ids import RequestIds
from mediagen.logs import request_ids
from mediagen.logs.context import bound, current
from mediagen.logs.formatting import JsonLines, TextLines, formatter_for
from mediagen.logs.setup import DemoteToDebug, build_handler

TOKEN = "r8_" + "x" * 37


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines into a buffer through the production handler."""
    out = io.StringIO()
    logger = logging.getLogger("mediagen.test_logs")
    handler = build_handler("json", out)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_has_the_fields_in_order_and_the_context(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    with bound(request_id="req-1", job_id="job-1"), bound(tenant="acme", attempt=2):
        logger.info("job=%s stored %d bytes", "job-1", 42, extra={"size_bytes": 42})
    logger.warning("no context here")
    first, second = _lines(out)
    assert list(first) == [
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "job_id",
        "tenant",
        "attempt",
        "size_bytes",
    ]
    assert first["level"] == "INFO"
    assert first["logger"] == "mediagen.test_logs"
    assert first["message"] == "job=job-1 stored 42 bytes"
    assert (first["request_id"], first["job_id"], first["tenant"], first["attempt"]) == (
        "req-1",
        "job-1",
        "acme",
        2,
    )
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert list(second) == ["time", "level", "logger", "message"]


def test_an_error_carries_its_type_message_and_stack_redacted(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    try:
        raise ConnectionError(f"refused: Authorization: Bearer {TOKEN}")
    except ConnectionError:
        logger.exception("create failed for %s", TOKEN)
    (line,) = _lines(out)
    error = line["error"]
    assert error["type"] == "ConnectionError"
    assert "[REDACTED]" in error["message"]
    assert error["stack"].startswith("Traceback (most recent call last):")
    assert "ConnectionError: refused" in error["stack"]
    assert TOKEN not in out.getvalue()
    assert "exc_info" not in line


def test_text_lines_put_the_context_in_brackets_and_redact_tracebacks() -> None:
    formatter = TextLines()
    record = logging.LogRecord("mediagen.x", logging.INFO, __file__, 1, "claimed", None, None)
    record.request_id, record.job_id, record.attempt = "req-1", "job-1", 3
    assert formatter.format(record).endswith(
        " INFO mediagen.x claimed [request_id=req-1 job=job-1 try=3]"
    )
    said = logging.LogRecord(
        "mediagen.x", logging.INFO, __file__, 1, "job=%s running try=%d", ("job-1", 13), None
    )
    said.request_id, said.job_id, said.attempt = "req-1", "job-1", 1
    assert formatter.format(said).endswith(" job=job-1 running try=13 [request_id=req-1 try=1]")
    plain = logging.LogRecord("mediagen.x", logging.INFO, __file__, 1, "started", None, None)
    assert formatter.format(plain).endswith(" INFO mediagen.x started")
    try:
        raise ValueError(TOKEN)
    except ValueError as exc:
        failed = logging.LogRecord(
            "mediagen.x", logging.ERROR, __file__, 1, "failed", None, (ValueError, exc, None)
        )
    assert TOKEN not in formatter.format(failed)


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert isinstance(formatter_for("auto", tty=True), TextLines)
    assert isinstance(formatter_for("auto", tty=False), JsonLines)
    assert isinstance(formatter_for("json", tty=True), JsonLines)
    assert isinstance(formatter_for("text", tty=False), TextLines)
    assert isinstance(build_handler("auto", _Terminal()).formatter, TextLines)


def test_the_log_format_setting() -> None:
    assert Settings.from_env({}).log_format == "auto"
    assert Settings.from_env({"MEDIAGEN_LOG_FORMAT": " JSON "}).log_format == "json"
    with pytest.raises(ConfigError, match="MEDIAGEN_LOG_FORMAT must be one of json, text, auto"):
        Settings.from_env({"MEDIAGEN_LOG_FORMAT": "xml"})


async def test_each_task_keeps_its_own_context() -> None:
    seen: dict[str, tuple[str | None, str | None]] = {}

    async def attempt(request_id: str, job_id: str) -> None:
        with bound(request_id=request_id, job_id=job_id):
            await asyncio.sleep(0)  # the other task binds meanwhile
            seen[job_id] = (current().request_id, current().job_id)

    with bound(tenant="acme"):
        await asyncio.gather(attempt("a", "job-a"), attempt("b", "job-b"))
        assert current().tenant == "acme"
    assert seen == {"job-a": ("a", "job-a"), "job-b": ("b", "job-b")}
    assert current().request_id is None and current().tenant is None


async def test_a_stream_abandoned_mid_way_closes_from_another_task() -> None:
    async def stream() -> AsyncGenerator[int, None]:
        with bound(request_id="req-1"):
            yield 1
            yield 2

    messages = stream()
    assert await anext(messages) == 1
    # As asyncio's finalizer would close it: in a task of its own, another context.
    await asyncio.create_task(messages.aclose())  # no "different Context" ValueError


@pytest.mark.parametrize(
    "given",
    ["0f8fe2b2-6a35-4b59-9d1c-7f1c2a8b0e4d", "01J9ZK4N3A6", "Root=1-67891233-abcdef", "a" * 128],
)
def test_a_safe_request_id_is_kept(given: str) -> None:
    assert request_ids.accept(given) == given


@pytest.mark.parametrize("given", [None, "", "a b", 'x"y', "line\nbreak", "é", "a" * 129])
def test_an_unsafe_or_missing_request_id_is_replaced(given: str | None) -> None:
    made = request_ids.accept(given)
    assert made != given and len(made) == 32 and request_ids.is_valid(made)
    assert request_ids.accept(given) != made  # a new one each time


def test_per_request_lines_of_chatty_loggers_are_debug() -> None:
    chatty = logging.getLogger("mediagen.test_logs.chatty")
    out = io.StringIO()
    handler = build_handler("json", out)
    demote = DemoteToDebug()
    chatty.addHandler(handler)
    chatty.addFilter(demote)
    chatty.propagate = False
    try:
        chatty.setLevel(logging.INFO)
        chatty.info("HTTP Request: GET /v1/predictions/abc")
        chatty.warning("HTTP pool exhausted")
        chatty.setLevel(logging.DEBUG)
        chatty.info("HTTP Request: GET /v1/predictions/def")
    finally:
        chatty.removeHandler(handler)
        chatty.removeFilter(demote)
        chatty.propagate = True
    assert [(line["level"], line["message"]) for line in _lines(out)] == [
        ("WARNING", "HTTP pool exhausted"),
        ("DEBUG", "HTTP Request: GET /v1/predictions/def"),
    ]


async def test_the_gateway_forwards_and_returns_the_request_id() -> None:
    seen: list[tuple[list[bytes], str | None]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        given = [v for k, v in scope["headers"] if k == b"x-request-id"]
        seen.append((given, current().request_id))
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    transport = httpx.ASGITransport(app=RequestIds(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        kept = await http.get("/x", headers={"X-Request-Id": "owl-1"})
        made = await http.get("/x")
        replaced = await http.get("/x", headers={"X-Request-Id": "not safe"})
    assert kept.headers["x-request-id"] == "owl-1"
    assert seen[0] == ([b"owl-1"], "owl-1")
    for reply, (forwarded, logged_as) in ((made, seen[1]), (replaced, seen[2])):
        request_id = reply.headers["x-request-id"]
        assert len(request_id) == 32 and request_id != "not safe"
        assert forwarded == [request_id.encode()] and logged_as == request_id
