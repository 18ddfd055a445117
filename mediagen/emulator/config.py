"""How the emulator behaves: one frozen object, built once and passed down."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mediagen.config import Settings
from mediagen.emulator.ratelimits import REPLICATE_LIMITS
from mediagen.providers.rates import Rates


@dataclass(frozen=True)
class EmulatorConfig:
    """Timings, limits and credentials of an emulated Replicate.

    A prediction spends ``starting_s`` in ``starting`` and the rest of ``latency_s`` in
    ``processing``; an input key ``emulator_latency_s`` overrides ``latency_s`` for one prediction.
    """

    latency_s: float = 3.0  # create -> terminal state, for a prediction without an override
    starting_s: float = 0.1  # queue/cold boot, part of latency_s (capped at it)
    finalize_s: float = 0.0  # outputs complete while the status is still ``processing``
    progress_steps: int = 50  # length of the tqdm bar written to ``logs``
    api_token: str | None = None  # None: accept any Authorization, or none
    retention_s: float = 3600.0  # after completion: data removed, files 404 (real: ~1 hour)
    page_size: int = 100  # predictions per list page, as Replicate
    default_width: int = 1024  # image size when the input names none (SDXL's default)
    default_height: int = 1024
    webhook_secret: str = "whsec_ZW11bGF0b3Itd2ViaG9vay1zaWduaW5nLWtleQ=="
    # Webhooks go to loopback addresses and these exact host names only: a test stand-in must
    # not be a tool for reaching other machines.
    webhook_hosts: tuple[str, ...] = ()
    # Waits before each retry of a failed completion webhook (Replicate: about 1 minute in all).
    webhook_retry_delays_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
    webhook_timeout_s: float = 5.0  # one delivery attempt, connect to answer
    shutdown_grace_s: float = 1.0  # open requests (sync waits, downloads) get this long at stop
    limits: Rates = REPLICATE_LIMITS  # per-account budgets (mediagen/emulator/ratelimits.py)

    def __post_init__(self) -> None:
        # Raised at start-up, never per request: a bad config is a developer mistake.
        for name in ("latency_s", "starting_s", "finalize_s", "retention_s", "shutdown_grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"EmulatorConfig.{name} must be >= 0")
        if self.progress_steps < 1 or self.page_size < 1:
            raise ValueError("EmulatorConfig.progress_steps and page_size must be >= 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> EmulatorConfig:
        """The emulator ``mediagen serve``/``mediagen emulator`` run: latency and token from
        settings (a token, when set, is then required as it would be by Replicate), and its
        rate limits."""
        return cls(
            latency_s=settings.emulator_latency_s,
            api_token=settings.replicate_api_token,
            limits=dataclasses.replace(
                REPLICATE_LIMITS,
                creates_per_min=settings.emulator_creates_per_min,
                requests_per_min=settings.emulator_requests_per_min,
            ),
        )
