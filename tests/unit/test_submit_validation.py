"""Bad submissions at the HTTP edge: each is a 4xx problem naming every bad URL by its index with a reason
people understand, checked before anything is stored; what is left is scraped once per page."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from api.http import handles_errors, json_response, parse_body
from api.jobs import submission_plan
from shared.contract.schemas import CancelJobRequest, SubmitJobRequest, normalised_url
from shared.settings import get_settings

LOCAL = {"TRAWL_ENVIRONMENT": "local", "TRAWL_DATABASE_URL": "postgresql://localhost/trawl",
         "TrawlStorage": "UseDevelopmentStorage=true", "TRAWL_FETCH_ALLOWED_PORTS": "80,443,8443",
         "TRAWL_FETCH_ALLOWED_NETWORKS": "10.1.0.0/16", "TRAWL_MAX_URL_LENGTH": "100"}
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in LOCAL.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@handles_errors
def submit(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/jobs up to where it would store the job: its answer is the plan."""
    plan = submission_plan(req, get_settings())
    return json_response({"urls": plan.urls, "merged_duplicates": plan.merged_duplicates,
                          "refused_urls": [refused.model_dump() for refused in plan.refused]}, 202)


@handles_errors
def cancel(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"reason": parse_body(req, CancelJobRequest, optional=True).reason})


def post(endpoint: Any, body: bytes | str | dict[str, Any], content_type: str | None = "application/json"
         ) -> tuple[int, str, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = endpoint(func.HttpRequest("POST", "http://127.0.0.1/api/jobs", headers=headers, body=raw))
    return response.status_code, response.mimetype, json.loads(response.get_body())


def refused(body: dict[str, Any]) -> dict[Any, tuple[str, str]]:
    """A 422's errors by location: (type, msg)."""
    status, media_type, problem = post(submit, body)
    assert (status, media_type, problem["status"]) == (422, PROBLEM, 422), problem
    return {tuple(error["loc"]): (error["type"], error["msg"]) for error in problem["errors"]}


GOOD = "https://example.com/a"
UNPARSABLE = "cannot be parsed: its port must be a number from 1 to 65535 and an IPv6 host needs both brackets"
USER_INFO = "holds a user name or password before the host (user-info), which is never sent: remove it"


@pytest.mark.parametrize(("url", "kind"), [
    ("https://user:hunter2@example.com/", "url_user_info"),
    ("https://token@example.com/", "url_user_info"),
    ("https://example.com/a\x00b", "url_control_character"),
    ("https://example.com/a\r\nSet-Cookie: x=1", "url_control_character"),
    ("https://example.com/a\u2028b", "url_control_character"),
    ("https://example.com/a\x85b", "url_control_character"),
    ("https://example.com/\ud800", "string_unicode"),
    ("https://exa mple.com/", "url_invalid_host"),
    ("https://example.com:8080/", "url_port_not_allowed"),
    ("https://example.com:0/", "url_port_not_allowed"),
    ("https://example.com:99999/", "url_unparsable"),
    ("https://[::1/", "url_unparsable"),
    ("ftp://example.com/", "url_not_http"),
    ("/relative/path", "url_not_http"),
    ("http://localhost/", "url_blocked_address"),
    ("http://169.254.169.254/latest/meta-data/", "url_blocked_address"),
    ("http://[::ffff:127.0.0.1]/", "url_blocked_address"),
    ("https://example.com/" + "x" * 100, "url_too_long"),
])
def test_each_url_the_fetcher_would_refuse_is_a_422_at_its_index(url: str, kind: str) -> None:
    errors = refused({"urls": [GOOD, GOOD, GOOD, url]})
    assert list(errors) == [("urls", 3)]
    [(error_type, message)] = errors.values()
    assert error_type == kind
    assert "Value error" not in message and "SubmitJobRequest" not in message and "Input should" not in message


def test_every_bad_url_is_named_with_a_reason_people_understand() -> None:
    urls = [GOOD, "https://example.com:8080/", "https://example.com:0/", "https://example.com:99999/",
            "https://user:pw@example.com/", 7, "http://10.1.2.3:8443/fine"]
    assert refused({"urls": urls}) == {
        ("urls", 1): ("url_port_not_allowed", "uses port 8080; the ports allowed are 80, 443, 8443"),
        ("urls", 2): ("url_port_not_allowed", "uses port 0; the ports allowed are 80, 443, 8443"),
        ("urls", 3): ("url_unparsable", UNPARSABLE),
        ("urls", 4): ("url_user_info", USER_INFO),
        ("urls", 5): ("string_type", "must be a string"),
    }


@pytest.mark.parametrize("value", ["600", True, 600.0, "ten"])
def test_types_are_strict(value: object) -> None:
    errors = refused({"urls": [GOOD], "options": {"deadline_seconds": value}})
    assert errors == {("options", "deadline_seconds"): ("int_type", "must be an integer")}


@pytest.mark.parametrize(("body", "errors"), [
    ([GOOD], {(): ("model_type", "must be a JSON object")}),
    ({"urls": GOOD}, {("urls",): ("list_type", "must be a list")}),
    ({"urls": []}, {("urls",): ("too_short", "must have at least 1 item(s)")}),
    ({}, {("urls",): ("missing", "is required")}),
    ({"urls": [GOOD], "options": 5}, {("options",): ("model_type", "must be a JSON object")}),
    ({"urls": [GOOD], "skip_invalid_urls": "yes"}, {("skip_invalid_urls",): ("bool_type", "must be true or false")}),
    ({"urls": ["ftp://x"], "surprise": 1}, {("urls", 0): ("url_not_http", "is not an absolute http(s) URL"),
                                            ("surprise",): ("extra_forbidden", "is not a field this request takes")}),
])
def test_shape_errors_read_as_sentences_without_class_names(body: Any, errors: dict[Any, Any]) -> None:
    assert refused(body) == errors


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"urls": ' + "[" * 50_000 + "]" * 50_000 + "}"])
def test_a_json_depth_bomb_is_a_400(body: str) -> None:
    status, media_type, problem = post(submit, body)
    assert (status, media_type) == (400, PROBLEM)
    assert problem["detail"] == "the body is not valid JSON: it is nested too deeply"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
                                          "application/xml"])
def test_a_body_declared_as_anything_but_json_is_a_415(content_type: str) -> None:
    status, media_type, problem = post(submit, {"urls": [GOOD]}, content_type)
    assert (status, media_type, problem["type"]) == (415, PROBLEM, "https://trawl.dev/problems/unsupported-media-type")


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json", None])
def test_json_or_an_undeclared_body_is_read(content_type: str | None) -> None:
    assert post(submit, {"urls": [GOOD]}, content_type)[0] == 202


def test_duplicates_are_merged_into_the_first_and_counted() -> None:
    urls = ["HTTP://Example.COM:80/a#top", "http://example.com/a", "http://example.com/a#other", "http://example.com/A",
            "https://example.com", "https://example.com:443/", "http://example.com/a?x=1&y=2",
            "http://example.com/a?y=2&x=1"]
    status, _, plan = post(submit, {"urls": urls})
    assert status == 202
    assert plan["urls"] == ["HTTP://Example.COM:80/a#top", "http://example.com/A", "https://example.com",
                            "http://example.com/a?x=1&y=2", "http://example.com/a?y=2&x=1"]
    assert plan["merged_duplicates"] == 3


def test_the_normal_form_keeps_path_and_query_as_they_are() -> None:
    assert normalised_url("HTTPS://Bücher.Example:443/Path/?b=2&a=1#frag") == (
        "https://xn--bcher-kva.example/Path/?b=2&a=1")
    assert normalised_url("http://0x7f.1:8443") == "http://127.0.0.1:8443/"


def test_skip_invalid_urls_accepts_the_rest_and_lists_the_refused_by_host_only() -> None:
    urls = ["https://user:s3cret@example.com/a", GOOD, "https://example.com:8080/b?api_key=k-123", GOOD]
    status, _, plan = post(submit, {"urls": urls, "skip_invalid_urls": True})
    assert status == 202
    assert (plan["urls"], plan["merged_duplicates"]) == ([GOOD], 1)
    assert plan["refused_urls"] == [
        {"index": 0, "url": "https://example.com", "type": "url_user_info", "reason": USER_INFO},
        {"index": 2, "url": "https://example.com:8080", "type": "url_port_not_allowed",
         "reason": "uses port 8080; the ports allowed are 80, 443, 8443"},
    ]


def test_skip_invalid_urls_with_nothing_valid_is_a_422_naming_each() -> None:
    errors = refused({"urls": ["ftp://x", "https://example.com:8080/"], "skip_invalid_urls": True})
    assert [(loc, kind) for loc, (kind, _) in errors.items()] == [(("urls", 0), "url_not_http"),
                                                                  (("urls", 1), "url_port_not_allowed")]


@pytest.mark.parametrize(("reason", "kind"), [("stop\x00now", "text_nul"), ("stop \ud800", "string_unicode"),
                                              (5, "string_type"), ("x" * 501, "string_too_long")])
def test_a_cancel_reason_postgresql_cannot_store_is_a_422(reason: object, kind: str) -> None:
    status, media_type, problem = post(cancel, {"reason": reason})
    assert (status, media_type) == (422, PROBLEM)
    assert [(e["loc"], e["type"]) for e in problem["errors"]] == [(["reason"], kind)]


def test_a_cancel_reason_with_line_breaks_is_kept() -> None:
    assert post(cancel, {"reason": "first line\nsecond line"}) == (200, "application/json",
                                                                    {"reason": "first line\nsecond line"})


def test_a_surrogate_in_the_raw_json_is_refused_not_stored() -> None:
    status, _, problem = post(submit, b'{"urls": ["https://example.com/\\udc80"]}')
    assert status == 422
    assert problem["errors"][0] == {"loc": ["urls", 0], "type": "string_unicode",
                                    "msg": "is not valid Unicode text (it holds a lone surrogate)"}


def test_submit_request_keeps_urls_as_sent_apart_from_surrounding_spaces() -> None:
    request = SubmitJobRequest.model_validate({"urls": [" https://example.com/a#f "]})
    assert request.urls == ["https://example.com/a#f"]
