"""Query strings at the edge: repeated and comma-joined parameters (as the Functions host delivers
them), defaults for blank values, and 400 problems for invalid ones."""
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import azure.functions as func
import pytest

from api.params import job_id_of, parse_query
from shared.contract.schemas import JobListQuery, ResultsQuery
from shared.domain.errors import BadRequest, NotFound
from shared.domain.models import ItemStatus, JobStatus


def request(query: str, params: dict[str, str] | None = None) -> func.HttpRequest:
    url = "http://127.0.0.1/api/jobs" + (f"?{query}" if query else "")
    return func.HttpRequest("GET", url, params=params or {}, body=b"")


@pytest.mark.parametrize("query", ["status=running&status=failed", "status=running,failed",
                                   "status=running&status=failed,running", "status=%20running%20,failed"])
def test_a_status_filter_may_be_repeated_or_comma_separated(query: str) -> None:
    assert set(parse_query(request(query), JobListQuery).status or ()) == {JobStatus.RUNNING, JobStatus.FAILED}


def test_the_hosts_comma_joined_params_are_used_when_the_url_has_no_query() -> None:
    parsed = parse_query(request("", {"status": "succeeded,skipped", "limit": "5"}), ResultsQuery)
    assert (parsed.status, parsed.limit) == ([ItemStatus.SUCCEEDED, ItemStatus.SKIPPED], 5)


def test_absent_or_blank_parameters_take_their_defaults() -> None:
    parsed = parse_query(request("status=&limit=&cursor="), JobListQuery)
    assert (parsed.status, parsed.limit, parsed.cursor) == (None, 20, None)


@pytest.mark.parametrize(("query", "params"), [("stauts=failed&limit=5", {}), ("", {"stauts": "failed", "limit": "5"}),
                                               ("unknown=", {})])
def test_an_unknown_parameter_is_a_400_naming_it(query: str, params: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_query(request(query, params), JobListQuery)
    problem = raised.value.problem()
    [error] = problem["errors"]
    assert (problem["status"], error["loc"], error["type"]) == (400, [query.partition("=")[0] or "stauts"],
                                                                "extra_forbidden")
    assert "created_after" in error["msg"]  # it names the parameters the endpoint takes


@pytest.mark.parametrize(("query", "name", "export"), [
    ("format=csv&limit=10", "limit", "csv"), ("format=ndjson&cursor=abc", "cursor", "ndjson"),
    ("limit=10&format=csv", "limit", "csv"),
])
def test_paging_an_export_is_refused_rather_than_ignored(query: str, name: str, export: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_query(request(query), ResultsQuery)
    assert raised.value.problem()["errors"] == [{
        "loc": [name], "type": "value_error",
        "msg": f"{name} pages format=json only; format={export} returns every matching item"}]


def test_an_export_without_paging_and_a_json_page_are_fine() -> None:
    assert parse_query(request("format=csv&status=failed"), ResultsQuery).format == "csv"
    assert parse_query(request("format=json&limit=10&cursor=abc"), ResultsQuery).limit == 10


def test_query_errors_read_as_sentences() -> None:
    with pytest.raises(BadRequest) as raised:
        parse_query(request("limit=ten"), JobListQuery)
    assert raised.value.problem()["errors"] == [{"loc": ["limit"], "msg": "must be an integer", "type": "int_parsing"}]


def test_instants_need_an_offset() -> None:
    parsed = parse_query(request("created_after=2026-01-02T03:04:05Z"), JobListQuery)
    assert parsed.created_after == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(BadRequest):
        parse_query(request("created_after=2026-01-02T03:04:05"), JobListQuery)


def test_instants_are_normalised_to_utc_because_postgresql_refuses_offsets_past_15_59() -> None:
    parsed = parse_query(request("created_after=0254-12-07T23:57:42-16:41"), JobListQuery)
    assert parsed.created_after == datetime(254, 12, 8, 16, 38, 42, tzinfo=UTC)
    assert parsed.created_after.utcoffset() == timedelta(0)


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
def test_instants_beyond_the_calendar_in_utc_are_400s(instant: str) -> None:
    with pytest.raises(BadRequest):
        parse_query(request(f"created_before={quote(instant)}"), JobListQuery)


@pytest.mark.parametrize(("query", "loc"), [
    ("status=running,done", ["status", 1]), ("limit=0", ["limit"]), ("limit=101", ["limit"]),
    ("limit=ten", ["limit"]), ("limit=5&limit=6", ["limit"]), ("created_before=soon", ["created_before"]),
])
def test_invalid_parameters_are_400_problems_naming_them(query: str, loc: list[object]) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_query(request(query), JobListQuery)
    problem = raised.value.problem()
    assert problem["status"] == 400
    assert loc in [error["loc"] for error in problem["errors"]]


def test_a_malformed_job_id_is_a_job_that_does_not_exist() -> None:
    req = func.HttpRequest("GET", "http://127.0.0.1/api/jobs/x", route_params={"id": "x"}, body=b"")
    with pytest.raises(NotFound):
        job_id_of(req)
