"""Imports an app folder's function_app.py and describes its functions, like the Python worker's indexing."""
from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.config import ConfigError

log = logging.getLogger("devhost")

SUPPORTED_TRIGGERS = frozenset({"httpTrigger", "queueTrigger", "timerTrigger", "orchestrationTrigger", "activityTrigger"})
SUPPORTED_BINDINGS = SUPPORTED_TRIGGERS | {"http", "queue", "durableClient"}
# The Functions host rejects any other binding name when it loads the app.
_BINDING_NAME = re.compile(r"^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$")


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: its name, bindings (as function.json dicts) and the callable."""

    name: str
    bindings: tuple[dict[str, Any], ...]
    func: Callable[..., Any]

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if b["type"].endswith("Trigger"))

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def bindings_of(self, binding_type: str) -> list[dict[str, Any]]:
        return [b for b in self.bindings if b["type"] == binding_type]


def load_functions(script_root: Path, script_file: str = "function_app.py") -> list[FunctionSpec]:
    """Import the app and index its functions once (the SDK's get_functions() may only run once).

    Fails at start, naming the function and binding, for anything devhost cannot run, so that an
    app never looks healthy locally while part of it would silently do nothing.
    """
    app = _find_app(_import_app(script_root, script_file), script_file)
    specs = [_describe(f) for f in app.get_functions()]
    for spec in specs:
        _check_supported(spec)
    return specs


def enabled_functions(specs: list[FunctionSpec], environ: Mapping[str, str]) -> list[FunctionSpec]:
    """The functions not switched off by an `AzureWebJobs.<name>.Disabled` setting of `true` (or `1`), as the
    host reads it: a disabled function gets no trigger listener and its HTTP route answers 404."""
    enabled = []
    for spec in specs:
        if environ.get(f"AzureWebJobs.{spec.name}.Disabled", "").strip().lower() in ("true", "1"):
            log.info("function '%s' is disabled (AzureWebJobs.%s.Disabled)", spec.name, spec.name)
        else:
            enabled.append(spec)
    return enabled


def _import_app(script_root: Path, script_file: str) -> Any:
    module_name = Path(script_file).stem
    root = str(script_root.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    if not (script_root / script_file).is_file():
        raise ConfigError(f"{script_root / script_file} not found")
    sys.modules.pop(module_name, None)
    return importlib.import_module(module_name)


def _find_app(module: Any, script_file: str) -> func.FunctionRegister:
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise ConfigError(f"{script_file} must define exactly one FunctionApp/DFApp at module level, found {len(apps)}")
    return apps[0]


def _describe(function: Any) -> FunctionSpec:
    bindings = tuple(json.loads(raw) for raw in function.get_raw_bindings())
    return FunctionSpec(name=function.get_function_name(), bindings=bindings, func=function.get_user_function())


def _check_supported(spec: FunctionSpec) -> None:
    for binding in spec.bindings:
        if not _BINDING_NAME.match(binding["name"]):
            raise ConfigError(
                f"function '{spec.name}': the binding name '{binding['name']}' is invalid "
                "(the host allows letters and digits only, starting with a letter)"
            )
        if binding["type"] not in SUPPORTED_BINDINGS:
            raise ConfigError(
                f"function '{spec.name}': binding '{binding['name']}' of type '{binding['type']}' "
                f"is not supported by devhost (supported: {', '.join(sorted(SUPPORTED_BINDINGS))})"
            )
    triggers = [b for b in spec.bindings if b["type"].endswith("Trigger")]
    if len(triggers) != 1:
        raise ConfigError(f"function '{spec.name}' must have exactly one trigger, has {len(triggers)}")
