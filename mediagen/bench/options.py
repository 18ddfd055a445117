"""What a bench run is asked to do: one frozen object, checked once."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
#: The scenarios (one module each, see :mod:`mediagen.bench.runner`) and the deployments a
#: run can start; here, so the command line lists them without importing the scenarios.
SCENARIO_NAMES = ("submit", "e2e", "inflight", "watch", "copy")
DEPLOY_KINDS = ("embedded", "distributed")


@dataclass(frozen=True)
class BenchOptions:
    jobs: int = 100  # jobs (calls) at most; watch: the jobs the streams watch
    seconds: float = 60.0  # the longest the measured phase (or the wait for jobs) may take
    concurrency: int = 32  # callers in a closed loop
    rate: float | None = None  # submit: calls offered per second (an open loop) instead
    job_seconds: float = 0.0  # how long each emulated prediction runs
    streams: int = 100  # watch: WatchJob streams
    idle_s: float = 5.0  # watch: seconds the open streams are measured idle
    size_mib: int = 1024  # copy: the one output's size
    part_size_mib: int | None = None  # copy: S3 multipart part size (default: the service's)
    metrics: bool = True  # MEDIAGEN_METRICS of a deployment the run starts

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.jobs <= 100_000:
            problems.append("jobs must be 1 to 100,000")
        if not 0 < self.seconds <= 3600:
            problems.append("seconds must be more than 0 and at most 3,600")
        if not 1 <= self.concurrency <= 1000:
            problems.append("concurrency must be 1 to 1,000")
        if self.rate is not None and not 0 < self.rate <= 100_000:
            problems.append("rate must be more than 0 and at most 100,000 per second")
        if not 0 <= self.job_seconds <= 3600:
            problems.append("job seconds must be 0 to 3,600 (the emulator's range)")
        if not 1 <= self.streams <= 20_000:
            problems.append("streams must be 1 to 20,000")
        if not 0 < self.idle_s <= 600:
            problems.append("idle seconds must be more than 0 and at most 600")
        if not 1 <= self.size_mib <= 16 * 1024:
            problems.append("size must be 1 MiB to 16 GiB")
        if problems:
            raise ValueError("; ".join(problems))
