"""``mediagen chaos``: a private distributed deployment on loopback, broken on purpose, and a
report of whether any job was lost, paid twice, or watched with a gap.

- :mod:`~mediagen.chaos.plan`: the scenarios and each batch's aimed faults (pure);
- :mod:`~mediagen.chaos.report`: observations, counts, verdicts, the table (pure);
- :mod:`~mediagen.chaos.targets`: loopback only (pure);
- :mod:`~mediagen.chaos.processes`, :mod:`~mediagen.chaos.cluster`: the processes, by PID;
- :mod:`~mediagen.chaos.load`, :mod:`~mediagen.chaos.evidence`: the client side and the
  read-back (emulator list, database rows, storage);
- :mod:`~mediagen.chaos.runner`: :func:`run_chaos`, which ties them together.
"""

from mediagen.chaos.cluster import ClusterOptions
from mediagen.chaos.report import ChaosReport, ScenarioRow, format_table
from mediagen.chaos.runner import ChaosOptions, run_chaos

__all__ = [
    "ChaosOptions",
    "ChaosReport",
    "ClusterOptions",
    "ScenarioRow",
    "format_table",
    "run_chaos",
]
