"""`AzureWebJobs.<name>.Disabled`: the host leaves a disabled function out, as Azure does."""
from __future__ import annotations

from collections.abc import Callable

import requests

from devhost.indexing import FunctionSpec, enabled_functions
from tests.devhost.conftest import DevhostProcess


def spec(name: str) -> FunctionSpec:
    return FunctionSpec(name=name, bindings=(), func=lambda: None)


def test_only_true_or_1_disables_and_only_the_named_function() -> None:
    specs = [spec("a"), spec("b"), spec("c"), spec("d")]
    environ = {"AzureWebJobs.a.Disabled": "true", "AzureWebJobs.b.Disabled": "1", "AzureWebJobs.c.Disabled": "false",
               "AzureWebJobs.D.Disabled": "true"}
    assert [s.name for s in enabled_functions(specs, environ)] == ["c", "d"]


def test_a_disabled_http_function_answers_404_and_the_others_still_serve(
        devhost: Callable[..., DevhostProcess]) -> None:
    host = devhost("http_app", env={"AzureWebJobs.get_special.Disabled": "true"})

    assert requests.get(f"{host.base_url}/svc/items/special", timeout=10).status_code == 404
    assert requests.get(f"{host.base_url}/svc/items/7", timeout=10).status_code == 200
    assert "function 'get_special' is disabled" in host.logs()
