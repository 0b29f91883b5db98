"""Request validation at the edge and the service's configured limits."""
import pytest
from pydantic import ValidationError

from shared.contract.schemas import URL_RULES, SubmitJobRequest, UrlRules
from shared.domain.errors import ValidationFailed
from shared.services.job_service import _check_limits, request_hash
from shared.settings import Settings

LOCAL = {"TRAWL_ENVIRONMENT": "local", "TRAWL_DATABASE_URL": "postgresql://localhost/trawl",
         "TrawlStorage": "UseDevelopmentStorage=true"}


def _settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    for name, value in {**LOCAL, **values}.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("body", [
    {},
    {"urls": []},
    {"urls": ["ftp://example.com/"]},
    {"urls": ["/relative"]},
    {"urls": ["https://example.com/"], "extra": 1},
    {"urls": ["https://example.com/"], "options": {"deadline_seconds": 1}},
    {"urls": ["https://example.com/"], "options": {"unknown": True}},
    {"urls": "https://example.com/"},
])
def test_invalid_bodies_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SubmitJobRequest.model_validate(body)


def test_valid_body_is_normalised() -> None:
    request = SubmitJobRequest.model_validate({"urls": [" https://example.com/a "]})
    assert request.urls == ["https://example.com/a"]
    assert request.options.deadline_seconds is None


def test_limits_name_each_offending_field(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, TRAWL_MAX_URLS_PER_JOB="2", TRAWL_MAX_URL_LENGTH="64",
                         TRAWL_MAX_DEADLINE_SECONDS="100", TRAWL_DEFAULT_DEADLINE_SECONDS="50")
    body = {"urls": ["https://a.example/", "https://b.example/" + "x" * 80, "https://c.example/"],
            "options": {"deadline_seconds": 500}}
    with pytest.raises(ValidationError) as too_long:  # a URL's length is checked with the URL itself
        SubmitJobRequest.model_validate(body, context={URL_RULES: UrlRules.of(settings)})
    assert [(e["loc"], e["type"]) for e in too_long.value.errors()] == [(("urls", 1), "url_too_long")]

    with pytest.raises(ValidationFailed) as raised:
        _check_limits(SubmitJobRequest.model_validate(body), settings)
    locs = [e["loc"] for e in raised.value.extensions["errors"]]
    assert locs == [["urls"], ["options", "deadline_seconds"]]


def test_request_hash_ignores_key_order_but_not_content() -> None:
    a = SubmitJobRequest.model_validate({"urls": ["https://a.example/"], "options": {"deadline_seconds": 60}})
    b = SubmitJobRequest.model_validate({"options": {"deadline_seconds": 60}, "urls": ["https://a.example/"]})
    c = SubmitJobRequest.model_validate({"urls": ["https://b.example/"], "options": {"deadline_seconds": 60}})
    assert request_hash(a) == request_hash(b) != request_hash(c)


def test_settings_reject_emulator_and_placeholders_outside_local(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="storage emulator"):
        _settings(monkeypatch, TRAWL_ENVIRONMENT="azure")
    with pytest.raises(ValidationError, match="placeholder"):
        _settings(monkeypatch, TRAWL_ENVIRONMENT="azure", TrawlStorage="DefaultEndpointsProtocol=https;AccountKey=<key>")


def test_settings_parse_allowed_networks_and_reject_bad_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, TRAWL_FETCH_ALLOWED_NETWORKS="127.0.0.0/8, ::1/128")
    assert [str(n) for n in settings.allowed_networks] == ["127.0.0.0/8", "::1/128"]
    with pytest.raises(ValidationError):
        _settings(monkeypatch, TRAWL_FETCH_ALLOWED_NETWORKS="not-a-network")


def test_item_messages_give_logs_their_job_and_seq(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    from uuid import UUID

    from shared.domain.messages import ItemMessage

    message = ItemMessage(job_id=UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"), seq=7)
    with caplog.at_level(logging.INFO, logger="trawl.test"):
        logging.getLogger("trawl.test").info("scraped", extra=message.log_context())
    record = caplog.records[-1]
    assert (getattr(record, "trawl.job.id"), getattr(record, "trawl.item.seq")) == (str(message.job_id), 7)
