"""``ReplicateProvider``: the provider seam over the official ``replicate`` client (1.0.7).

Only the async create/get/cancel calls are used; ``replicate.run()`` is not (it returns None or
hangs on states it does not expect; reference/replicate.md). Every foreign error (ReplicateError,
httpx, pydantic) becomes a :class:`ProviderError` here and nowhere else; which are transient and
which leave a create ambiguous is decided by :mod:`mediagen.providers.ambiguity` (a 5xx, a
timeout, a dropped connection or an unreadable answer to a create: the prediction may exist).
Transient errors carry the provider's wait hint: ``Retry-After``, the body's ``retry_after``, or
"resets in ~Ns" in its detail.

Every create carries a :class:`~mediagen.providers.marker.Marker` in its ``webhook`` URL, and
:meth:`ReplicateProvider.find_marked` pages through the prediction list for it
(docs/predictions.md).

An unparseable answer to get (1.0.7 rejects ``status: aborted``) is read again as raw JSON, so
``aborted`` is seen as the terminal state it is.

The client's own retries are off: its ``RetryTransport`` would resend a GET answered 429, 503 or
504 up to nine times, unseen by the shared request budget. Those answers are raised beneath it
instead (it retries answers, never exceptions), so every request sent is one the caller paid
for: :mod:`mediagen.providers.budgeted` resends reads within the budget, and on a 429 pauses
every worker. (The client never resends a POST, so creates were never resent.)

Calls wait for one of ``max_connections`` slots before their deadline starts, so a busy pool
delays calls rather than failing them with ``PoolTimeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from replicate.client import Client, RetryTransport
from replicate.exceptions import ReplicateError

from mediagen.config import Settings
from mediagen.fetching.fetcher import FetchLimits, OutputFetcher
from mediagen.fetching.policy import DELIVERY_HOSTS, FetchPolicy
from mediagen.logs import context as log_context
from mediagen.logs import request_ids
from mediagen.providers.ambiguity import Answer, classify
from mediagen.providers.base import BeforeSend, Prediction, PredictionStatus, ProviderError
from mediagen.providers.marker import WEBHOOK_EVENTS, Marker
from mediagen.providers.rates import pool_size, provider_rates
from mediagen.providers.retry_hint import retry_after_s
from mediagen.redaction import clean_upstream

DEFAULT_BASE_URL = "https://api.replicate.com"
#: find_marked reads at most this many list pages (100 predictions each, between its two times).
_FIND_MAX_PAGES = 20
_MODEL_REF = re.compile(r"([\w.-]+/[\w.-]+)(?::([0-9a-f]{64}))?")
_VERSION_ID = re.compile(r"[0-9a-f]{64}")
_URL_PREFIXES = ("https://", "http://", "data:")
_TRANSIENT_STATUSES = {408, 429}


# --- pure helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """``owner/name`` (latest or official model), ``owner/name:<version>``, or ``<version>``."""

    model: str | None
    version: str | None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        """``ProviderError`` (permanent) for anything else."""
        if _VERSION_ID.fullmatch(ref):
            return cls(None, ref)
        if match := _MODEL_REF.fullmatch(ref):
            return cls(match[1], match[2])
        raise ProviderError(f"not a Replicate model reference: {ref!r}", transient=False)

    @property
    def version_param(self) -> str:
        """The ``version`` create body value: ``owner/name:<id>`` keeps the model name."""
        assert self.version is not None  # only called for version refs
        return f"{self.model}:{self.version}" if self.model else self.version


def output_urls(output: Any) -> tuple[str, ...]:
    """Every URL in an output: a string, a list, a dict (in order) or None.

    Non-URL strings (a text model's words) are left out; objects such as ``FileOutput`` count by
    their ``str()``, which is their URL.
    """
    if output is None:
        return ()
    if isinstance(output, Mapping):
        return tuple(url for value in output.values() for url in output_urls(value))
    if isinstance(output, list | tuple):
        return tuple(url for item in output for url in output_urls(item))
    text = output if isinstance(output, str) else str(output)
    return (text,) if text.startswith(_URL_PREFIXES) else ()


def prediction_from_json(data: Mapping[str, Any]) -> Prediction:
    """Our view of a prediction body (raw JSON, or the client's model as a dict)."""
    prediction_id = data.get("id")
    if not isinstance(prediction_id, str):
        raise ProviderError("prediction without an id", transient=True)
    try:
        status = PredictionStatus(str(data.get("status")))
    except ValueError as exc:
        # A status newer than this code: not final as far as we know; poll again later.
        raise ProviderError(
            f"unknown prediction status {data.get('status')!r}", transient=True
        ) from exc
    metrics = data.get("metrics") or {}
    predict_time = metrics.get("predict_time")
    return Prediction(
        id=prediction_id,
        status=status,
        logs=data.get("logs") or "",
        output_urls=output_urls(data.get("output")),
        # Free text from the model: bounded and redacted before anything stores or logs it.
        error=None if data.get("error") is None else clean_upstream(str(data["error"])),
        predict_time_s=float(predict_time) if isinstance(predict_time, int | float) else None,
        metrics=dict(metrics),
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).isoformat()


def _created_at(item: Mapping[str, Any]) -> datetime | None:
    raw = item.get("created_at")
    if not isinstance(raw, str):
        return None
    with contextlib.suppress(ValueError):
        return _aware(datetime.fromisoformat(raw))
    return None


# --- error translation ---------------------------------------------------------------------------

#: The retry hint of the last error response in this task. ``ReplicateError`` keeps no headers
#: and not the body's ``retry_after``, so a response hook notes them here.
_last_hint: ContextVar[float | None] = ContextVar("replicate_retry_hint", default=None)


async def _send_request_id(request: httpx.Request) -> None:
    """Tag each API call with the request id it is made for, so Replicate's side (or a proxy
    on the way) can be matched with our logs."""
    request_id = log_context.current().request_id
    if request_id is not None:
        request.headers[request_ids.HEADER] = request_id


async def _note_retry_hint(response: httpx.Response) -> None:
    if response.status_code in _TRANSIENT_STATUSES or response.status_code >= 500:
        await response.aread()  # small problem body; httpx keeps it for the client
        try:
            body = response.json()
        except ValueError:
            body = None
        _last_hint.set(retry_after_s(response.headers.get("retry-after"), body))


class _NoClientRetries(httpx.AsyncBaseTransport):
    """Turns every answer the client's ``RetryTransport`` would resend (429, 503, 504) into
    :class:`httpx.HTTPStatusError` beneath it, which it does not retry."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code in RetryTransport.RETRYABLE_STATUS_CODES:
            await response.aread()  # a small problem body, kept for the detail and retry hint
            raise httpx.HTTPStatusError("not retried here", request=request, response=response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _from_status_error(exc: httpx.HTTPStatusError, *, creating: bool) -> ProviderError:
    """An answer raised by :class:`_NoClientRetries`: its problem detail and retry hint."""
    response = exc.response
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, Mapping) else None
    text = clean_upstream(str(detail)) if detail else ""
    status = response.status_code
    found = classify(exc, creating=creating)
    return ProviderError(
        f"Replicate answered {status}: {text}" if text else f"Replicate answered {status}",
        transient=found.transient,
        retry_after_s=retry_after_s(response.headers.get("retry-after"), body),
        ambiguous=found.ambiguous,
        status=status,
    )


def _from_replicate_error(exc: ReplicateError, *, creating: bool) -> ProviderError:
    status = exc.status or 0
    text = clean_upstream(" ".join(part for part in (exc.title, exc.detail) if part))
    message = f"Replicate answered {status}: {text}" if text else f"Replicate answered {status}"
    found = classify(exc, creating=creating)
    hint = None
    if found.transient:
        hint = _last_hint.get()
        if hint is None:
            hint = retry_after_s(None, {"detail": exc.detail})
    return ProviderError(
        message,
        transient=found.transient,
        retry_after_s=hint,
        ambiguous=found.ambiguous,
        status=status,
    )


def _from_transport_error(exc: Exception, *, creating: bool, what: str) -> ProviderError:
    found = classify(exc, creating=creating)
    name = type(exc).__name__
    if not found.transient:
        message = f"bad Replicate URL: {exc}"
    elif found.answer is Answer.NOT_SENT:
        message = f"could not reach Replicate: {name}: {exc}"
    else:  # the request may have arrived: a create may have started a prediction
        message = f"{what}: {name}: {exc}".rstrip(": ")
    return ProviderError(message, transient=found.transient, ambiguous=found.ambiguous)


@contextlib.asynccontextmanager
async def _translated(*, creating: bool, deadline_s: float) -> AsyncIterator[None]:
    """Map foreign errors to ProviderError, and bound the call by ``deadline_s``.

    1.0.7 sends creates with ``timeout=None``, which httpx reads as "no timeout at all", so a
    server that never answers would hold a create forever; the deadline covers that.
    """
    _last_hint.set(None)
    try:
        async with asyncio.timeout(deadline_s):
            yield
    except ReplicateError as exc:
        raise _from_replicate_error(exc, creating=creating) from exc
    except httpx.HTTPStatusError as exc:
        raise _from_status_error(exc, creating=creating) from exc
    except httpx.HTTPError as exc:
        what = "no answer from Replicate"
        raise _from_transport_error(exc, creating=creating, what=what) from exc
    except TimeoutError as exc:
        what = f"no answer from Replicate within {deadline_s:g}s"
        raise _from_transport_error(exc, creating=creating, what=what) from exc


# --- the provider ---------------------------------------------------------------------------------


class ReplicateProvider:
    """Replicate (or the bundled emulator, by ``base_url``) through the official client.

    Timeouts are httpx's (connect, and read between bytes); every call also has a deadline of
    their sum. ``transport`` replaces the network (an ``httpx.MockTransport`` in tests).
    Outputs are fetched by an :class:`OutputFetcher`: only from ``output_hosts``, with the
    token only for ``token_hosts`` and the API's own origin, within ``fetch_limits``.

    ``webhook_url`` is the base of the marker URLs creates carry (required to pass a marker).
    """

    def __init__(
        self,
        *,
        api_token: str | None,
        base_url: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_connections: int = 100,
        pool_timeout_s: float = 10.0,
        download_connections: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        output_hosts: Sequence[str] = DELIVERY_HOSTS,
        token_hosts: Sequence[str] = DELIVERY_HOSTS,
        fetch_limits: FetchLimits | None = None,
        webhook_url: str | None = None,
    ) -> None:
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=pool_timeout_s)
        self._deadline_s = connect_timeout_s + read_timeout_s
        self._webhook_url = webhook_url
        # One slot per connection: a call waits here, outside its deadline, never in the pool.
        self._slots = asyncio.Semaphore(max_connections)
        # The client always passes a transport to httpx, which then ignores ``limits``: the
        # pool is sized on the transport itself. Idle connections are kept as many, since a
        # steady budget keeps them busy.
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # With no explicit base URL the client would read REPLICATE_BASE_URL itself; settings
        # already did, so pin it.
        self._client = Client(
            api_token=api_token,
            base_url=base_url or DEFAULT_BASE_URL,
            timeout=timeout,
            transport=_NoClientRetries(transport or httpx.AsyncHTTPTransport(limits=limits)),
            # Also handed to the client's sync httpx client, which this class never uses.
            event_hooks={"request": [_send_request_id], "response": [_note_retry_hint]},
        )
        self._fetcher = OutputFetcher(
            FetchPolicy.build(output_hosts, token_hosts, base_url or DEFAULT_BASE_URL),
            fetch_limits or FetchLimits(),
            token=api_token,
            timeout=timeout,
            max_connections=download_connections or max_connections,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> ReplicateProvider:
        """``base_url`` overrides the settings' (the embedded emulator's URL). API connections:
        ``provider_max_connections``, or as many as the concurrency and the budget can use
        (:func:`~mediagen.providers.rates.pool_size`); downloads: one per job in flight."""
        return cls(
            max_connections=settings.provider_max_connections
            or pool_size(settings.worker_concurrency, provider_rates(settings)),
            download_connections=settings.worker_concurrency,
            api_token=settings.replicate_api_token,
            base_url=base_url or settings.replicate_base_url,
            output_hosts=settings.output_hosts,
            token_hosts=settings.output_token_hosts,
            fetch_limits=FetchLimits(
                max_bytes=settings.max_output_bytes,
                deadline_s=settings.download_timeout_s,
                min_rate_bps=settings.download_min_rate_bps,
            ),
            # Connecting never needs more than the usual 5 s, nor more than a whole answer may.
            connect_timeout_s=min(5.0, settings.provider_read_timeout_s),
            read_timeout_s=settings.provider_read_timeout_s,
            webhook_url=settings.effective_webhook_url,
        )

    async def create(
        self,
        model: str,
        model_input: Mapping[str, Any],
        *,
        marker: Marker | None = None,
        before_send: BeforeSend | None = None,
    ) -> Prediction:
        ref = ModelRef.parse(model)
        params: dict[str, Any] = {}
        if marker is not None:
            if self._webhook_url is None:
                raise ValueError("a marker needs the provider's webhook_url")
            params = {
                "webhook": marker.webhook_url(self._webhook_url),
                "webhook_events_filter": list(WEBHOOK_EVENTS),
            }
        if before_send is not None:
            await before_send()
        try:
            async with self._call(creating=True):
                if ref.version is None:
                    assert ref.model is not None  # parse() gives a model or a version
                    created = await self._client.models.predictions.async_create(
                        model=ref.model, input=dict(model_input), **params
                    )
                else:
                    created = await self._client.predictions.async_create(
                        version=ref.version_param, input=dict(model_input), **params
                    )
        except ValueError as exc:  # pydantic's ValidationError, or a body that is not JSON
            raise _from_transport_error(
                exc, creating=True, what="unreadable answer to a create"
            ) from exc
        return prediction_from_json(created.dict())

    async def get(self, prediction_id: str) -> Prediction:
        try:
            async with self._call(creating=False):
                found = await self._client.predictions.async_get(prediction_id)
        except ValueError:
            # 1.0.7 cannot parse some real answers (``status: aborted``): read the JSON ourselves.
            return prediction_from_json(await self._raw_json(f"/v1/predictions/{prediction_id}"))
        return prediction_from_json(found.dict())

    async def cancel(self, prediction_id: str) -> Prediction:
        try:
            async with self._call(creating=False):
                canceled = await self._client.predictions.async_cancel(prediction_id)
        except ValueError:
            return await self.get(prediction_id)  # cancelled, but the answer did not parse
        return prediction_from_json(canceled.dict())

    async def find_marked(
        self, marker: Marker, *, created_after: datetime, created_before: datetime
    ) -> list[Prediction]:
        query = urlencode(
            {"created_after": _iso(created_after), "created_before": _iso(created_before)}
        )
        since = _aware(created_after)
        path: str | None = f"/v1/predictions?{query}"
        found: list[Prediction] = []
        for _ in range(_FIND_MAX_PAGES):
            if not path:
                break
            page = await self._raw_json(path)
            for item in page.get("results") or []:
                created = _created_at(item)
                if created is not None and created <= since:
                    return found  # newest first: everything further is older
                if Marker.from_webhook_url(item.get("webhook")) == marker:
                    found.append(prediction_from_json(item))
            path = page.get("next")
        return found

    async def download(self, url: str) -> AsyncIterator[bytes]:
        async for chunk in self._fetcher.stream(url):
            yield chunk

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (``GET /v1/webhooks/default/secret``)."""
        key = (await self._raw_json("/v1/webhooks/default/secret")).get("key")
        if not isinstance(key, str):
            raise ProviderError("unexpected webhook secret from Replicate: no key", transient=True)
        return key

    async def close(self) -> None:
        await self._fetcher.aclose()
        await self._client._async_client.aclose()

    @contextlib.asynccontextmanager
    async def _call(self, *, creating: bool) -> AsyncIterator[None]:
        """A connection slot, then the call within its deadline, its errors translated."""
        async with self._slots, _translated(creating=creating, deadline_s=self._deadline_s):
            yield

    async def _raw_json(self, path: str) -> Mapping[str, Any]:
        """GET a JSON object through the client's own httpx client (its auth), skipping its
        pydantic models."""
        async with self._call(creating=False):
            response = await self._client._async_request("GET", path)
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError(f"unreadable answer from Replicate: {exc}", transient=True) from exc
        if not isinstance(body, Mapping):
            raise ProviderError("unexpected answer from Replicate: not an object", transient=True)
        return body
