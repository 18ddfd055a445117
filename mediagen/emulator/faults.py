"""Fault rules the emulator applies to chosen calls, and the plan that arms and spends them.

Request faults (``ServerError``, ``Throttle``, ``Delay``, ``Drop``) hit HTTP calls to a route;
with ``after=True`` the call is handled first and only its answer is lost, delayed or replaced
(a create that happened but whose response never arrived); the answer is held in memory
meanwhile, so keep ``after`` off big file downloads. ``Outcome`` decides how the next
matching prediction ends. Every rule fires ``times`` times (``None``: until cleared), and
``match`` limits it to calls about a prediction whose prompt contains that text. Pure: no I/O.

JSON form (``POST /_emulator/faults``)::

    {"kind": "error", "route": "create", "status": 503, "times": 2}
    {"kind": "throttle", "route": "create", "retry_after_s": 2, "header": false}
    {"kind": "delay", "route": "get", "delay_s": 1.5, "after": true}
    {"kind": "drop", "route": "create", "after": true, "match": "cat"}
    {"kind": "outcome", "status": "failed", "error": "CUDA out of memory", "match": "cat"}
    {"kind": "output", "output": ["https://elsewhere.example/x.png"], "match": "cat"}
    {"kind": "webhook", "action": "drop", "match": "cat"}
    {"kind": "webhook", "action": "duplicate"}
    {"kind": "webhook", "action": "delay", "delay_s": 2}
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from mediagen.providers.base import PredictionStatus


class Route(enum.StrEnum):
    """The calls faults can target (and the stats count)."""

    CREATE = "create"  # any of the three create endpoints
    GET = "get"
    CANCEL = "cancel"
    LIST = "list"
    FILE = "file"  # output file downloads
    SECRET = "secret"  # GET /v1/webhooks/default/secret


@dataclass(frozen=True, kw_only=True)
class _Rule:
    kind: ClassVar[str]
    times: int | None = 1  # calls it affects; None: every matching call until cleared
    match: str | None = None  # only calls about a prediction whose prompt contains this

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1, or None for every call")


@dataclass(frozen=True, kw_only=True)
class _RequestRule(_Rule):
    route: Route | None = None  # None: every /v1 and file route
    after: bool = False  # handle the call, then apply the fault to its answer


@dataclass(frozen=True, kw_only=True)
class ServerError(_RequestRule):
    """Answer with a 5xx problem."""

    kind: ClassVar[str] = "error"
    status: int = 503

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 500 <= self.status <= 599:
            raise ValueError("status must be a 5xx code")


@dataclass(frozen=True, kw_only=True)
class Throttle(_RequestRule):
    """Answer 429 with ``retry_after`` in the body and, if ``header``, a ``Retry-After`` header.

    Always applied before the call is handled (``after`` is ignored): a throttled call does
    nothing."""

    kind: ClassVar[str] = "throttle"
    retry_after_s: int = 1
    header: bool = True


@dataclass(frozen=True, kw_only=True)
class Delay(_RequestRule):
    """Wait ``delay_s`` before handling the call (or, with ``after``, before answering).

    The request has arrived either way: a call whose client gives up meanwhile is still handled
    (a create delayed past the client's deadline still makes its prediction, late)."""

    kind: ClassVar[str] = "delay"
    delay_s: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Drop(_RequestRule):
    """Close the TCP connection without an HTTP response."""

    kind: ClassVar[str] = "drop"


_OUTCOMES = {PredictionStatus.FAILED, PredictionStatus.CANCELED, PredictionStatus.ABORTED}


@dataclass(frozen=True, kw_only=True)
class Outcome(_Rule):
    """The next matching prediction ends ``failed`` (with ``error``), ``canceled`` or
    ``aborted`` (the status the 1.0.7 client cannot parse)."""

    kind: ClassVar[str] = "outcome"
    status: PredictionStatus = PredictionStatus.FAILED
    error: str = "Prediction failed: injected by the emulator"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.status not in _OUTCOMES:
            raise ValueError("status must be failed, canceled or aborted")


@dataclass(frozen=True, kw_only=True)
class Output(_Rule):
    """The next matching prediction succeeds with exactly ``output`` as its output (any JSON:
    URLs anywhere, ``data:`` URIs, hundreds of items), instead of the emulator's own files."""

    kind: ClassVar[str] = "output"
    output: Any = None


class WebhookAction(enum.StrEnum):
    DROP = "drop"  # never sent, nor retried: the receiver must fall back to polling
    DUPLICATE = "duplicate"  # sent twice, same webhook-id and body, as Replicate may
    DELAY = "delay"  # sent ``delay_s`` late


@dataclass(frozen=True, kw_only=True)
class Webhook(_Rule):
    """The completion webhook of the next matching prediction is dropped, duplicated or
    delayed."""

    kind: ClassVar[str] = "webhook"
    action: WebhookAction = WebhookAction.DROP
    delay_s: float = 1.0


RequestFault = ServerError | Throttle | Delay | Drop
Fault = RequestFault | Outcome | Output | Webhook
_KINDS: dict[str, type[Fault]] = {
    c.kind: c for c in (ServerError, Throttle, Delay, Drop, Outcome, Output, Webhook)
}


_R = TypeVar("_R", Outcome, Output, Webhook)


@dataclass
class _Armed:
    rule: Fault
    remaining: int | None


class FaultPlan:
    """Armed rules, first added first served; a rule is dropped once spent."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []

    def add(self, *rules: Fault) -> None:
        self._armed.extend(_Armed(rule, rule.times) for rule in rules)

    def clear(self) -> None:
        self._armed.clear()

    def pending(self) -> list[tuple[Fault, int | None]]:
        """Each armed rule with the number of calls it still affects (None: unlimited)."""
        return [(armed.rule, armed.remaining) for armed in self._armed]

    def needs_subject(self, route: Route) -> bool:
        """Whether a rule for ``route`` matches on the prompt, so the caller must find it."""
        return any(a.rule.match is not None and _targets(a.rule, route) for a in self._armed)

    def take(self, route: Route, subject: str | None, *, after: bool) -> RequestFault | None:
        """Spend the first request rule for this route, phase and prompt, if any."""
        for armed in self._armed:
            rule = armed.rule
            if (
                isinstance(rule, _RequestRule)
                and _targets(rule, route)
                and (rule.after and not isinstance(rule, Throttle)) == after
                and _matches(rule, subject)
            ):
                self._spend(armed)
                return rule
        return None

    def take_outcome(self, prompt: str) -> Outcome | None:
        return self._take_rule(Outcome, prompt)

    def take_output(self, prompt: str) -> Output | None:
        return self._take_rule(Output, prompt)

    def take_webhook(self, prompt: str) -> Webhook | None:
        return self._take_rule(Webhook, prompt)

    def _take_rule(self, kind: type[_R], prompt: str) -> _R | None:
        for armed in self._armed:
            if isinstance(armed.rule, kind) and _matches(armed.rule, prompt):
                self._spend(armed)
                return armed.rule
        return None

    def _spend(self, armed: _Armed) -> None:
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining == 0:
                self._armed.remove(armed)


def _targets(rule: Fault, route: Route) -> bool:
    return isinstance(rule, _RequestRule) and rule.route in (None, route)


def _matches(rule: Fault, subject: str | None) -> bool:
    return rule.match is None or (subject is not None and rule.match in subject)


# --- JSON -------------------------------------------------------------------------------------


def _strict(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"expected a {kind.__name__}, got {value!r}")
        return value

    return convert


_NULLABLE: dict[str, Callable[[Any], Any]] = {
    "times": _strict(int),
    "match": _strict(str),
    "route": Route,
}


def _convert(name: str, default: Any, value: Any) -> Any:
    if name == "output":  # any JSON value
        return value
    if name in _NULLABLE:
        return None if value is None else _NULLABLE[name](value)
    if isinstance(default, enum.Enum):
        return type(default)(value)
    expected: tuple[type, ...] = (type(default),)
    if isinstance(default, float):
        expected = (int, float)
    if not isinstance(value, expected) or (isinstance(value, bool) != isinstance(default, bool)):
        raise ValueError(f"{name} must be a {type(default).__name__}")
    return type(default)(value)


def fault_from_json(data: Mapping[str, Any]) -> Fault:
    """A rule from its JSON form; ``ValueError`` names what is wrong."""
    kind = data.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields) - {"kind"}
    if unknown:
        raise ValueError(f"unknown keys for {kind}: {sorted(unknown)}")
    values = {
        name: _convert(name, fields[name].default, v) for name, v in data.items() if name != "kind"
    }
    return cls(**values)


def fault_to_json(rule: Fault, remaining: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": rule.kind, **dataclasses.asdict(rule)}
    body["remaining"] = remaining
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in body.items()}
