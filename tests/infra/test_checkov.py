"""checkov (bicep framework) on infra/: no failed check, no file it could not parse, and every skip
justified inline in the template (`// checkov:skip=CKV_...: reason`)."""
from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import INFRA

pytestmark = pytest.mark.infra

MIN_REASON_CHARS = 40


def test_checkov_scanned_every_template(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["results"]["parsing_errors"]
    scanned = {check["file_path"].lstrip("/") for kind in ("passed_checks", "failed_checks", "skipped_checks")
               for check in checkov_report["results"][kind]}
    expected = {"modules/storage.bicep", "modules/function-app.bicep", "modules/api-management.bicep",
                "modules/network.bicep"}
    assert expected <= scanned, f"checkov found nothing to check in {expected - scanned}"
    assert summary["passed"] >= 20


def test_checkov_reports_no_failed_check(checkov_report: dict[str, Any]) -> None:
    failed = [f"{c['check_id']} {c['check_name']} ({c['file_path']}: {c['resource']})"
              for c in checkov_report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)


def test_every_skip_is_justified_inline(checkov_report: dict[str, Any]) -> None:
    for check in checkov_report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "").strip()
        where = f"{check['check_id']} on {check['resource']} in {check['file_path']}"
        assert len(reason) >= MIN_REASON_CHARS, f"{where}: say why, in the template, at the skip"
        source = (INFRA / check["file_path"].lstrip("/")).read_text()
        assert f"// checkov:skip={check['check_id']}: " in source, where
