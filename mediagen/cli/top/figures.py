"""What ``mediagen top`` reads from Prometheus text: queue, jobs per state, finished counts and
each worker's load. Pure: the caller fetches the text.

Each process is its own scrape target with its own registry, so figures are combined the way
the README's Metrics section says to query them: the database gauges (every API, scheduler and
embedded process computes the same ones) by ``max``, the counters and worker gauges by ``sum``
or per endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

# The series read (tests/unit/test_top.py checks that mediagen/metrics/definitions.py has each).
QUEUE_DEPTH: Final = "mediagen_queue_depth"
QUEUE_OLDEST: Final = "mediagen_queue_oldest_age_seconds"
JOBS_ACTIVE: Final = "mediagen_jobs"
JOBS_FINISHED: Final = "mediagen_jobs_finished_total"
IN_FLIGHT: Final = "mediagen_worker_jobs_in_flight"
CONCURRENCY: Final = "mediagen_worker_concurrency"
PROCESS_INFO: Final = "mediagen_process_info"
SERIES: Final = (
    QUEUE_DEPTH,
    QUEUE_OLDEST,
    JOBS_ACTIVE,
    JOBS_FINISHED,
    IN_FLIGHT,
    CONCURRENCY,
    PROCESS_INFO,
)

ACTIVE_STATES: Final = ("pending", "running")
FINISHED_STATES: Final = ("succeeded", "failed", "canceled")

#: A sample's name and its labels.
Key = tuple[str, frozenset[tuple[str, str]]]


class MetricsError(ValueError):
    """The text is not Prometheus exposition format."""


@dataclass(frozen=True)
class Scrape:
    """One endpoint's samples, or why there are none."""

    url: str
    samples: Mapping[Key, float] = field(default_factory=lambda: MappingProxyType({}))
    error: str = ""

    def values(self, name: str, **labels: str) -> list[float]:
        """Every sample named ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return [v for (n, ls), v in self.samples.items() if n == name and wanted <= ls]

    def label_values(self, name: str, label: str) -> list[str]:
        """The values ``label`` takes on the samples named ``name``, sorted."""
        return sorted({v for n, ls in self.samples if n == name for k, v in ls if k == label})


def parse(url: str, text: str) -> Scrape:
    """The samples of one ``/metrics`` response; :class:`MetricsError` if it is not one."""
    samples: dict[Key, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    except (ValueError, IndexError, KeyError) as exc:  # what the parser raises on bad lines
        raise MetricsError(f"not Prometheus metrics ({exc})") from exc
    return Scrape(url, MappingProxyType(samples))


@dataclass(frozen=True)
class Worker:
    """One worker process (an endpoint that reports a worker concurrency)."""

    url: str
    role: str
    in_flight: int
    concurrency: int


@dataclass(frozen=True)
class Figures:
    """Everything read at one moment from every endpoint."""

    #: Due PENDING jobs; None when no endpoint computes the database gauges.
    queue_depth: int | None
    #: How long the oldest due job has waited (seconds); None as above.
    oldest_wait_s: float | None
    #: PENDING and RUNNING jobs now (from the database gauges).
    active: Mapping[str, int]
    #: Jobs finished in each final state since the scraped processes started (summed).
    finished: Mapping[str, float]
    #: The same per endpoint, for rates that ignore endpoints that came or went.
    finished_by_url: Mapping[str, Mapping[str, float]]
    workers: tuple[Worker, ...]
    #: Endpoints that could not be read: (url, why).
    unreachable: tuple[tuple[str, str], ...]


def _max(scrapes: Sequence[Scrape], name: str, **labels: str) -> float | None:
    found = [v for s in scrapes for v in s.values(name, **labels)]
    return max(found) if found else None


def _worker(scrape: Scrape) -> Worker | None:
    concurrency = sum(scrape.values(CONCURRENCY))
    if concurrency <= 0:  # not a worker (the gauge is 0 where no worker runs)
        return None
    roles = scrape.label_values(PROCESS_INFO, "role")
    return Worker(
        scrape.url, ",".join(roles) or "?", int(sum(scrape.values(IN_FLIGHT))), int(concurrency)
    )


def combine(scrapes: Sequence[Scrape]) -> Figures:
    """The figures of one round of scrapes."""
    read = [s for s in scrapes if not s.error]
    depth = _max(read, QUEUE_DEPTH)
    oldest = _max(read, QUEUE_OLDEST)
    active = {state: int(_max(read, JOBS_ACTIVE, state=state) or 0) for state in ACTIVE_STATES}
    by_url = {
        s.url: MappingProxyType(
            {state: sum(s.values(JOBS_FINISHED, state=state)) for state in FINISHED_STATES}
        )
        for s in read
    }
    finished = {state: sum(c[state] for c in by_url.values()) for state in FINISHED_STATES}
    workers = tuple(w for s in read if (w := _worker(s)) is not None)
    return Figures(
        queue_depth=int(depth) if depth is not None else None,
        oldest_wait_s=oldest,
        active=MappingProxyType(active),
        finished=MappingProxyType(finished),
        finished_by_url=MappingProxyType(by_url),
        workers=workers,
        unreachable=tuple((s.url, s.error) for s in scrapes if s.error),
    )


def rates(before: Figures, after: Figures, seconds: float) -> Mapping[str, float]:
    """Jobs finished per second in each final state between two rounds, over the endpoints
    read in both. A counter that went down belongs to a restarted process: its new count is
    what it did since."""
    per_state = dict.fromkeys(FINISHED_STATES, 0.0)
    if seconds <= 0:
        return MappingProxyType(per_state)
    for url, now in after.finished_by_url.items():
        then = before.finished_by_url.get(url)
        if then is None:
            continue
        for state in FINISHED_STATES:
            done = now[state] - then[state]
            per_state[state] += (done if done >= 0 else now[state]) / seconds
    return MappingProxyType(per_state)
