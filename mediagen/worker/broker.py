"""The Taskiq broker and the one task it carries: "wake up for job <id>".

Embedded: ``InMemoryBroker`` (the task runs as an asyncio task in the same process).
Distributed: a ``RedisStreamBroker`` that outlives Redis outages (acknowledged delivery;
:mod:`mediagen.worker.redis_stream`). Either way a message only wakes a
worker; the claim in the database decides who works (``../shared/reference/taskiq.md`` §10).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from taskiq import AsyncBroker, Context, InMemoryBroker, TaskiqDepends

from mediagen.config import Settings
from mediagen.logs import request_ids
from mediagen.logs.context import bound, current
from mediagen.redis_retry import stale_connection_retry
from mediagen.worker.redis_stream import ResilientStreamBroker

TASK_NAME = "mediagen.run_job"
#: The message label carrying the request id of the call (or attempt) that sent it.
REQUEST_ID_LABEL = "request_id"
CONSUMER_GROUP = "mediagen-workers"

#: What the worker process registers on ``broker.state.handle_job``: run one job id, calling
#: ``ack`` as soon as the job is claimed (or found taken or finished).
JobHandler = Callable[[str, Callable[[], Awaitable[None]] | None], Awaitable[None]]


def build_broker(settings: Settings) -> AsyncBroker:
    """The broker for the configured mode, with the job task registered on it."""
    broker: AsyncBroker
    if settings.redis_url:
        connection: dict[str, Any] = {
            "socket_keepalive": True,
            "health_check_interval": 30,
            # A pooled connection broken by a Redis restart is reconnected and the command sent
            # again, instead of failing once per stale connection (redis-py's pools retry 0).
            "retry": stale_connection_retry(),
        }
        # redis-py 8 defaults to a 5 s socket timeout. On Python 3.11 a socket timeout makes a
        # graceful worker shutdown hang (asyncio.wait_for loses the cancellation, gh-86296), so
        # there we rely on keepalive instead; 3.12+ gets a timeout above the 2 s blocking read.
        connection["socket_timeout"] = None if sys.version_info < (3, 12) else 10
        broker = ResilientStreamBroker(
            settings.redis_url,
            queue_name=settings.queue_name,
            consumer_group_name=CONSUMER_GROUP,
            xread_block=2000,
            # Small batches: a consumer holds few undelivered messages if it dies.
            xread_count=10,
            # Only the short window between delivery and the claim relies on redelivery; the
            # reconciler covers everything after the claim.
            idle_timeout=120_000,
            maxlen=None,  # trimming can drop unacknowledged messages
            max_connection_pool_size=200,
            **connection,
        )
    else:
        broker = InMemoryBroker()
    broker.register_task(run_job, task_name=TASK_NAME, ack_type="manual")
    return broker


async def run_job(job_id: str, context: Annotated[Context, TaskiqDepends()]) -> None:
    """Taskiq task: hand the job id to this process's job runner, logging under the job and
    the request id the message carries (the runner switches to the job's own once claimed)."""
    handler: JobHandler | None = getattr(context.state, "handle_job", None)

    async def ack() -> None:
        if context.is_ackable and not context.is_acked:
            await context.ack()

    if handler is None:
        # A process without a runner (an API process) never consumes; acknowledge nothing so
        # that a worker gets the message.
        raise RuntimeError("no job runner in this process")
    sent_by = context.message.labels.get(REQUEST_ID_LABEL)
    request_id = str(sent_by) if sent_by is not None else None
    with bound(
        request_id=request_id if request_id and request_ids.is_valid(request_id) else None,
        job_id=job_id,
    ):
        await handler(job_id, ack)


async def enqueue(broker: AsyncBroker, job_id: str) -> None:
    """Send a wake-up for ``job_id``, labelled with the current request id (if any)."""
    task = broker.find_task(TASK_NAME)
    if task is None:
        raise RuntimeError(f"task {TASK_NAME} is not registered")
    # A task id of its own per message: several wake-ups for one job may be in flight.
    kicker = task.kicker().with_task_id(f"{job_id}:{uuid.uuid4().hex[:12]}")
    request_id = current().request_id
    if request_id is not None:  # the caller's, or the attempt's that asks for a retry
        kicker = kicker.with_labels(**{REQUEST_ID_LABEL: request_id})
    await kicker.kiq(job_id)
