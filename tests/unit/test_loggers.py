"""The app's modules log under `trawl.`: the only logger the Azure Monitor exporter listens to
(shared/adapters/telemetry.py), so their records reach Application Insights and the SDKs' do not."""
import importlib
import logging
import pkgutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "api", "activities", "orchestrators")


def app_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names += [info.name for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}.")]
    return names


@pytest.mark.parametrize("name", app_modules())
def test_module_loggers_are_under_trawl(name: str) -> None:
    module = importlib.import_module(name)
    loggers = [value for value in vars(module).values() if isinstance(value, logging.Logger)]
    assert all(logger.name.startswith("trawl.") for logger in loggers), [logger.name for logger in loggers]


def test_the_check_finds_the_loggers() -> None:
    assert importlib.import_module("shared.services.item_worker").log.name == "trawl.shared.services.item_worker"
