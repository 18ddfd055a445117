"""Path templates of ``google.api.http`` rules, and the router that matches requests to them.

Grammar (``google/api/http.proto``)::

    Template = "/" Segments [ ":" Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;

``{x}`` means ``{x=*}``; ``*`` matches one non-empty segment, ``**`` any number of segments and
must come last. A single-segment variable is percent-decoded fully; a multi-segment one keeps
``%2F`` encoded (the spec's behaviour, grpc-gateway's ``UnescapingModeAllExceptReserved``).

Unlike grpc-gateway, whose match depends on registration order, the router tries templates from
the most specific to the least: a template whose ``:verb`` matches before one without a verb
(so ``GET /jobs/{id}:watch`` wins over ``GET /jobs/{id}``), then more literal segments first,
then declaration order. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ENCODED_SLASH = re.compile(r"%2[Ff]")


class TemplateError(ValueError):
    """A path template does not follow the grammar."""


class BadPathValue(ValueError):
    """A request path cannot be decoded (for example invalid UTF-8 after percent-decoding)."""


@dataclass(frozen=True)
class Segment:
    """One template segment: a literal, ``*`` (one segment) or ``**`` (the rest)."""

    kind: Literal["literal", "*", "**"]
    value: str = ""


@dataclass(frozen=True)
class Variable:
    """A template variable: the field path it sets and the segments ``[start, end)`` it covers."""

    field_path: str
    start: int
    end: int


@dataclass(frozen=True)
class PathTemplate:
    """A parsed path template."""

    text: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str = ""

    @property
    def has_tail(self) -> bool:
        """Whether the template ends in ``**``."""
        return bool(self.segments) and self.segments[-1].kind == "**"

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key, larger first: verb present, literal count, fixed-length."""
        literals = sum(1 for s in self.segments if s.kind == "literal")
        return (1 if self.verb else 0, literals, 0 if self.has_tail else 1)

    def match(self, components: Sequence[str]) -> dict[str, str] | None:
        """Variable values if ``components`` (raw path segments, verb removed) match, else None.

        Raises :class:`BadPathValue` if a matched value does not percent-decode to UTF-8.
        """
        n = len(self.segments)
        if self.has_tail:
            if len(components) < n - 1:
                return None
        elif len(components) != n:
            return None
        for i, segment in enumerate(self.segments):
            if segment.kind == "**":
                break
            component = components[i]
            if segment.kind == "*":
                if not component:
                    return None
            elif _decode(component, keep_slash=False) != segment.value:
                return None
        values: dict[str, str] = {}
        for var in self.variables:
            end = len(components) if var.end == n and self.has_tail else var.end
            raw = components[var.start : end]
            single = var.end - var.start == 1 and self.segments[var.start].kind == "*"
            values[var.field_path] = _decode("/".join(raw), keep_slash=not single)
        return values

    def split_verb(self, components: Sequence[str]) -> list[str] | None:
        """The components with this template's ``:verb`` removed, or None if the verb is absent."""
        if not components:
            return None
        if not self.verb:
            return list(components)
        last = components[-1]
        suffix = ":" + self.verb
        if not last.endswith(suffix) or len(last) == len(suffix):
            return None
        return [*components[:-1], last[: -len(suffix)]]


def _decode(raw: str, *, keep_slash: bool) -> str:
    try:
        if keep_slash:
            parts = _ENCODED_SLASH.split(raw)
            slashes = _ENCODED_SLASH.findall(raw)
            out = unquote(parts[0], errors="strict")
            for slash, part in zip(slashes, parts[1:], strict=True):
                out += slash + unquote(part, errors="strict")
            return out
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadPathValue(f"path segment {raw!r} is not valid percent-encoded UTF-8") from exc


def parse_template(text: str) -> PathTemplate:
    """Parse a ``google.api.http`` path template; raises :class:`TemplateError`."""
    if not text.startswith("/"):
        raise TemplateError(f"template {text!r} must start with '/'")
    path, verb = _split_template_verb(text)
    segments: list[Segment] = []
    variables: list[Variable] = []
    for token in _split_outside_braces(path[1:], "/"):
        if token.startswith("{"):
            variables.append(_parse_variable(token, segments, text))
        else:
            segments.append(_parse_plain(token, text))
    for i, segment in enumerate(segments):
        if segment.kind == "**" and i != len(segments) - 1:
            raise TemplateError(f"'**' must be the last segment in {text!r}")
    names = [v.field_path for v in variables]
    if len(set(names)) != len(names):
        raise TemplateError(f"a variable appears twice in {text!r}")
    return PathTemplate(text, tuple(segments), tuple(variables), verb)


def _split_template_verb(text: str) -> tuple[str, str]:
    depth = 0
    last_slash = 0
    colon = -1
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and ch == "/":
            last_slash = i
            colon = -1
        elif depth == 0 and ch == ":" and i > last_slash:
            colon = i
    if depth != 0:
        raise TemplateError(f"unbalanced braces in {text!r}")
    if colon < 0:
        return text, ""
    verb = text[colon + 1 :]
    if not verb:
        raise TemplateError(f"empty verb in {text!r}")
    return text[:colon], verb


def _split_outside_braces(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _parse_plain(token: str, text: str) -> Segment:
    if token == "*":
        return Segment("*")
    if token == "**":
        return Segment("**")
    if not token or any(c in token for c in "{}*"):
        raise TemplateError(f"bad segment {token!r} in {text!r}")
    return Segment("literal", token)


def _parse_variable(token: str, segments: list[Segment], text: str) -> Variable:
    if not token.endswith("}"):
        raise TemplateError(f"bad variable {token!r} in {text!r}")
    inner = token[1:-1]
    field_path, _, sub = inner.partition("=")
    if not _FIELD_PATH.match(field_path):
        raise TemplateError(f"bad field path {field_path!r} in {text!r}")
    start = len(segments)
    for part in _split_outside_braces(sub or "*", "/"):
        if part.startswith("{"):
            raise TemplateError(f"nested variable in {text!r}")
        segments.append(_parse_plain(part, text))
    return Variable(field_path, start, len(segments))


@dataclass(frozen=True)
class Route(Generic[T]):
    """An HTTP method and template leading to ``target``."""

    method: str
    template: PathTemplate
    target: T


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    """A matched route and its variable values (field path -> decoded text)."""

    route: Route[T]
    params: dict[str, str]


@dataclass(frozen=True)
class NoRoute:
    """Nothing matched the method; ``allowed`` lists the methods whose templates match the path
    (empty: 404, else 405)."""

    allowed: tuple[str, ...] = field(default_factory=tuple)


class Router(Generic[T]):
    """Matches (method, raw path) against routes, most specific template first."""

    def __init__(self, routes: Iterable[Route[T]]) -> None:
        ordered = sorted(
            enumerate(routes), key=lambda ir: (tuple(-k for k in ir[1].template.specificity), ir[0])
        )
        self.routes: tuple[Route[T], ...] = tuple(r for _, r in ordered)

    def match(self, method: str, raw_path: str) -> RouteMatch[T] | NoRoute:
        """Match a request. ``raw_path`` is still percent-encoded and has no query string.

        Raises :class:`BadPathValue` when the matching route's variable cannot be decoded.
        """
        if not raw_path.startswith("/"):
            return NoRoute()
        components = raw_path[1:].split("/")
        allowed: list[str] = []
        for route in self.routes:
            if route.method != method and route.method in allowed:
                continue
            stripped = route.template.split_verb(components)
            if stripped is None:
                continue
            params = route.template.match(stripped)
            if params is None:
                continue
            if route.method == method:
                return RouteMatch(route, params)
            allowed.append(route.method)
        return NoRoute(tuple(sorted(allowed)))
