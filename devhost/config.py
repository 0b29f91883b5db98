"""Reads an app folder's host.json and local.settings.json the way Core Tools does."""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("devhost")

_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)$")
_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


class ConfigError(Exception):
    """The app folder's configuration cannot be used; the message says what to fix."""


def parse_timespan(value: str) -> float:
    """Parse a .NET TimeSpan string ("hh:mm:ss", "d.hh:mm:ss", "00:00:00.5") into seconds."""
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise ConfigError(f"not a TimeSpan (hh:mm:ss): {value!r}")
    days = int(match["days"] or 0)
    return days * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + float(match["s"])


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the Storage Queues extension's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, section: dict[str, Any]) -> QueueOptions:
        batch_size = int(section.get("batchSize", 16))
        encoding = str(section.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ConfigError(f"extensions.queues.messageEncoding must be base64 or none, not {encoding!r}")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=int(section.get("newBatchThreshold", batch_size // 2)),
            max_polling_interval=parse_timespan(section.get("maxPollingInterval", "00:01:00")),
            visibility_timeout=parse_timespan(section.get("visibilityTimeout", "00:00:00")),
            max_dequeue_count=int(section.get("maxDequeueCount", 5)),
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json that devhost honours."""

    route_prefix: str = "api"
    function_timeout: float | None = 1800.0
    queues: QueueOptions = field(default_factory=QueueOptions)
    durable_hub_name: str = "TestHubName"
    durable_connection: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, script_root: Path) -> HostConfig:
        path = script_root / "host.json"
        if not path.is_file():
            raise ConfigError(f"{path} not found: a Functions app folder needs a host.json")
        raw = _with_environment_overrides(json.loads(path.read_text()), os.environ)
        extensions = raw.get("extensions", {})
        durable = extensions.get("durableTask", {})
        storage = durable.get("storageProvider", {})
        return cls(
            route_prefix=str(extensions.get("http", {}).get("routePrefix", "api")).strip("/"),
            function_timeout=_function_timeout(raw.get("functionTimeout")),
            queues=QueueOptions.from_host_json(extensions.get("queues", {})),
            durable_hub_name=resolve_setting_references(str(durable.get("hubName", "TestHubName"))),
            # The Azure Storage provider's names for it (connectionStringName before extension v2.7).
            durable_connection=storage.get("connectionName") or storage.get("connectionStringName"),
            raw=raw,
        )


def _with_environment_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply `AzureFunctionsJobHost__a__b=value` app settings over host.json, as the host does."""
    prefix = "AzureFunctionsJobHost__"
    for name, value in environ.items():
        if not name.startswith(prefix):
            continue
        *parents, leaf = name[len(prefix):].split("__")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return raw


def _function_timeout(value: str | None) -> float | None:
    if value is None:
        return 1800.0
    if value.strip() == "-1":
        return None
    return parse_timespan(value)


def resolve_setting_references(value: str, environ: Mapping[str, str] = os.environ) -> str:
    """Replace every %NAME% in a binding property or host.json value with the app setting NAME (the host's
    name resolver); a missing setting is an error, as on Azure ("'%NAME%' does not resolve to a value.")."""

    def setting(match: re.Match[str]) -> str:
        resolved = lookup_setting(environ, match[1])
        if resolved is None:
            raise ConfigError(f"'{match[0]}' does not resolve to a value.")
        return resolved

    return _SETTING_REFERENCE.sub(setting, value)


def lookup_setting(environ: Mapping[str, str], name: str) -> str | None:
    """An app setting by name, case-insensitively, as .NET configuration keys are."""
    if name in environ:
        return environ[name]
    wanted = name.lower()
    return next((value for key, value in environ.items() if key.lower() == wanted), None)


def apply_local_settings(script_root: Path, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Copy local.settings.json `Values` into the environment, as Core Tools does.

    A variable already set in the environment wins over the file, so CI and tests can override a
    setting without editing it. A missing file is not fatal (Core Tools runs without one too); the
    warning says how to create it. Returns the values that were applied.
    """
    path = script_root / "local.settings.json"
    if not path.is_file():
        sample = script_root / "local.settings.sample.json"
        hint = f" Create it with: cp {sample} {path}" if sample.is_file() else ""
        log.warning("%s not found; running with the environment only.%s", path, hint)
        return {}
    values = json.loads(path.read_text()).get("Values", {})
    applied = {}
    for name, value in values.items():
        if name in environ:
            log.info("setting %s comes from the environment, not local.settings.json", name)
            continue
        environ[name] = str(value)
        applied[name] = str(value)
    return applied
