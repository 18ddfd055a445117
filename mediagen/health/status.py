"""Whether each dependency is up, decided from probe results. Pure: no I/O, no clock.

A component that has never been probed takes its first result at once (a process that starts
without its database is not ready). After that it goes down only when :data:`DOWN_AFTER`
probes in a row fail, so one probe slowed by a busy machine does not take a pod out of service,
and it is up again at its first success. The process is ready while every component is up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Consecutive failed probes that take an up component down.
DOWN_AFTER = 2


@dataclass(frozen=True)
class ProbeResult:
    """One probe of one dependency."""

    name: str
    ok: bool
    latency_s: float
    error: str = ""  # why it failed, in a few words anyone may see; empty when ok
    detail: str = ""  # the failure in full (addresses, paths), for the log only


@dataclass(frozen=True)
class Component:
    """What is known of one dependency after its latest probe."""

    name: str
    up: bool
    latency_s: float  # of the latest probe
    error: str = ""  # the latest probe's failure, even while still counted up
    failures: int = 0  # consecutive failed probes
    detail: str = ""  # the latest failure in full, for the log only


def observe(
    previous: Component | None, result: ProbeResult, *, down_after: int = DOWN_AFTER
) -> Component:
    """The component after ``result``, given what was known before it (None: never probed)."""
    if result.ok:
        return Component(result.name, up=True, latency_s=result.latency_s)
    failures = (previous.failures if previous is not None else 0) + 1
    up = previous is not None and previous.up and failures < down_after
    return Component(result.name, up, result.latency_s, result.error, failures, result.detail)


def fold(
    previous: Mapping[str, Component],
    results: Iterable[ProbeResult],
    *,
    down_after: int = DOWN_AFTER,
) -> dict[str, Component]:
    """Every component after one round of probes (a new mapping; ``previous`` is untouched)."""
    return {r.name: observe(previous.get(r.name), r, down_after=down_after) for r in results}


def ready(components: Iterable[Component]) -> bool:
    """Whether the process may take traffic: every dependency up (none at all counts as up)."""
    return all(c.up for c in components)
