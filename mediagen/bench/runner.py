"""Run one scenario against a deployment it starts, or one already running."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import ModuleType

from mediagen.bench import copy_output, e2e, inflight, submit, watch
from mediagen.bench.deploy import Deployment, DeployOptions, deployed
from mediagen.bench.options import BenchOptions
from mediagen.bench.report import BenchReport

SCENARIOS: Mapping[str, ModuleType] = {
    "submit": submit,
    "e2e": e2e,
    "inflight": inflight,
    "watch": watch,
    "copy": copy_output,
}

Run = Callable[[Deployment, BenchOptions], Awaitable[BenchReport]]


async def run_bench(
    scenario: str, options: BenchOptions, where: DeployOptions | Deployment
) -> BenchReport:
    """Run ``scenario``; a :class:`DeployOptions` starts a private deployment for it first,
    with the scenario's settings, and stops it at the end."""
    module = SCENARIOS[scenario]
    run: Run = module.run
    if isinstance(where, Deployment):
        return await run(where, options)
    env = {**where.env, **module.deploy_env(options)}
    async with deployed(replace(where, env=env)) as deployment:
        return await run(deployment, options)
