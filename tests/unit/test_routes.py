"""Route templates: parameters, constraints and precedence as ASP.NET Core routing reads them."""
import pytest

from devhost.config import ConfigError
from devhost.routes import RouteTemplate


@pytest.mark.parametrize(("template", "path", "expected"), [
    ("jobs/{id}", "jobs/7", {"id": "7"}),
    ("jobs/{id}", "JOBS/7", {"id": "7"}),
    ("jobs/{id:guid}", "jobs/3f2504e0-4f89-11d3-9a0c-0305e82c3301", {"id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}),
    ("jobs/{id:guid}", "jobs/nope", None),
    ("n/{v:int}", "n/-3", {"v": "-3"}),
    ("n/{v:int}", "n/99999999999", None),
    ("n/{v:int:min(3)}", "n/2", None),
    ("n/{v:alpha}", "n/abc", {"v": "abc"}),
    ("n/{v:length(2,3)}", "n/abcd", None),
    ("n/{v:bool}", "n/True", {"v": "True"}),
    ("o/{v?}", "o", {}),
    ("files/{*rest}", "files/a/b/c", {"rest": "a/b/c"}),
    ("files/{*rest}", "files", {}),
    ("f/{name}.{ext}", "f/report.csv", {"name": "report", "ext": "csv"}),
    ("jobs/{id}", "jobs/7/results", None),
])
def test_match(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(template).match(path) == expected


def test_literal_segments_take_precedence_over_parameters() -> None:
    literal, constrained, free = (RouteTemplate.parse(t) for t in ("a/b", "a/{x:int}", "a/{x}"))
    assert sorted([free, constrained, literal], key=lambda r: r.precedence) == [literal, constrained, free]


def test_unknown_constraint_fails_loudly() -> None:
    with pytest.raises(ConfigError, match="unsupported route constraint 'nonsense'"):
        RouteTemplate.parse("a/{x:nonsense}")


def test_routes_under_admin_are_refused_as_the_host_does() -> None:
    from devhost.http_server import HttpRoute
    from devhost.indexing import FunctionSpec

    trigger = {"type": "httpTrigger", "name": "req", "direction": "IN", "route": "admin/jobs/{id}"}
    spec = FunctionSpec("admin_job", (trigger,), lambda req: None)
    with pytest.raises(ConfigError, match="conflicts with one or more built in routes"):
        HttpRoute.for_function(spec, "api")
