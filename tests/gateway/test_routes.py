"""Path templates and the router: pure, table-driven."""

from __future__ import annotations

import pytest

from mediagen.gateway.routes import (
    BadPathValue,
    NoRoute,
    Route,
    RouteMatch,
    Router,
    TemplateError,
    parse_template,
)


@pytest.mark.parametrize(
    ("text", "segments", "variables", "verb"),
    [
        ("/v1/jobs", ["v1", "jobs"], [], ""),
        ("/api/v1/jobs/{id}", ["api", "v1", "jobs", "*"], [("id", 3, 4)], ""),
        ("/api/v1/jobs/{id}:watch", ["api", "v1", "jobs", "*"], [("id", 3, 4)], "watch"),
        ("/v1/{name=jobs/*}", ["v1", "jobs", "*"], [("name", 1, 3)], ""),
        ("/v1/{name=jobs/*}:cancel", ["v1", "jobs", "*"], [("name", 1, 3)], "cancel"),
        ("/v1/{a.b}/x/{c}", ["v1", "*", "x", "*"], [("a.b", 1, 2), ("c", 3, 4)], ""),
        ("/v1/files/{path=**}", ["v1", "files", "**"], [("path", 2, 3)], ""),
        ("/v1/*/items", ["v1", "*", "items"], [], ""),
        ("/v1/media:generate", ["v1", "media"], [], "generate"),
        (
            "/v1/{name=shelves/*/books/**}:get",
            ["v1", "shelves", "*", "books", "**"],
            [("name", 1, 5)],
            "get",
        ),
    ],
)
def test_parse_template(text, segments, variables, verb):
    template = parse_template(text)
    assert [s.value if s.kind == "literal" else s.kind for s in template.segments] == segments
    assert [(v.field_path, v.start, v.end) for v in template.variables] == variables
    assert template.verb == verb


@pytest.mark.parametrize(
    "text",
    [
        "v1/jobs",  # no leading slash
        "/v1/{id",  # unbalanced
        "/v1/{a={b}}",  # nested variable
        "/v1/**/x",  # ** not last
        "/v1/{1bad}",  # bad field path
        "/v1/jobs:",  # empty verb
        "/v1//x",  # empty segment
        "/v1/{id}/{id}",  # variable twice
    ],
)
def test_parse_template_rejects(text):
    with pytest.raises(TemplateError):
        parse_template(text)


def _router() -> Router[str]:
    routes = [
        ("GET", "/api/v1/jobs/{id}", "GetJob2"),
        ("GET", "/api/v1/jobs/status/{id}", "GetJob"),
        ("GET", "/api/v1/jobs/{id}:watch", "WatchJob"),
        ("POST", "/api/v1/jobs/{id}:cancel", "CancelJob"),
        ("POST", "/api/v1/jobs/generate", "GenerateMedia"),
        ("GET", "/api/v1/jobs", "ListJobs"),
        ("GET", "/v1/{name=shelves/*/items/*}", "GetItem"),
        ("GET", "/v1/paths/{path=**}:read", "ReadPath"),
    ]
    return Router(Route(m, parse_template(t), name) for m, t, name in routes)


@pytest.mark.parametrize(
    ("method", "path", "target", "params"),
    [
        ("GET", "/api/v1/jobs/abc", "GetJob2", {"id": "abc"}),
        ("GET", "/api/v1/jobs/abc:watch", "WatchJob", {"id": "abc"}),
        ("GET", "/api/v1/jobs/status/abc", "GetJob", {"id": "abc"}),
        ("GET", "/api/v1/jobs/status", "GetJob2", {"id": "status"}),  # as grpc-gateway
        ("GET", "/api/v1/jobs/a%20b", "GetJob2", {"id": "a b"}),
        ("GET", "/api/v1/jobs/a%2Fb", "GetJob2", {"id": "a/b"}),  # single segment: all decoded
        ("GET", "/api/v1/jobs/abc:other", "GetJob2", {"id": "abc:other"}),
        ("GET", "/api/v1/jobs/abc:cancel", "GetJob2", {"id": "abc:cancel"}),  # GET, not POST
        ("GET", "/api/v1/jobs/generate", "GetJob2", {"id": "generate"}),
        ("POST", "/api/v1/jobs/abc:cancel", "CancelJob", {"id": "abc"}),
        ("POST", "/api/v1/jobs/generate", "GenerateMedia", {}),
        ("GET", "/api/v1/jobs", "ListJobs", {}),
        ("GET", "/v1/shelves/s1/items/i%2F2", "GetItem", {"name": "shelves/s1/items/i%2F2"}),
        ("GET", "/v1/paths/a/b/c:read", "ReadPath", {"path": "a/b/c"}),
        ("GET", "/v1/paths/x%2Fy:read", "ReadPath", {"path": "x%2Fy"}),
    ],
)
def test_router_matches(method, path, target, params):
    found = _router().match(method, path)
    assert isinstance(found, RouteMatch)
    assert found.route.target == target
    assert found.params == params


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/nope", ()),
        ("GET", "/api/v1/jobs/", ()),  # an empty segment matches no variable
        ("GET", "/api/v1/jobs/a/b", ()),
        ("DELETE", "/api/v1/jobs/abc", ("GET",)),
        ("PUT", "/api/v1/jobs", ("GET",)),
        ("POST", "/api/v1/jobs/abc", ("GET",)),
        ("GET", "/v1/shelves/s1/items", ()),
        ("GET", "/v1/paths/:read", ()),  # an empty last segment before the verb, as grpc-gateway
    ],
)
def test_router_misses(method, path, allowed):
    found = _router().match(method, path)
    assert isinstance(found, NoRoute)
    assert found.allowed == allowed


def test_router_rejects_bad_utf8_in_a_value():
    with pytest.raises(BadPathValue):
        _router().match("GET", "/api/v1/jobs/%FF")


def test_router_does_not_depend_on_declaration_order():
    routes = [
        Route("GET", parse_template("/jobs/{id}"), "get"),
        Route("GET", parse_template("/jobs/{id}:watch"), "watch"),
    ]
    for ordered in (routes, list(reversed(routes))):
        found = Router(ordered).match("GET", "/jobs/7:watch")
        assert isinstance(found, RouteMatch)
        assert found.route.target == "watch"
