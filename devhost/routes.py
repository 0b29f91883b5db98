"""HTTP route templates as the Functions host (ASP.NET Core routing) reads them.

Supports literal segments (case-insensitive), `{name}`, optional `{name?}`, catch-all `{*name}` and
the inline constraints int, long, bool, guid, alpha, decimal, double, float, datetime, length,
minlength, maxlength, min, max, range and regex. An unknown constraint fails at start.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from devhost.config import ConfigError

Check = Callable[[str], bool]
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)((?::[^{}?]+(?:\([^)]*\))?)*)(\?)?\}")
_CONSTRAINT = re.compile(r":([a-z]+)(?:\(([^)]*)\))?")


def _number(cast: Callable[[str], object]) -> Check:
    def check(value: str) -> bool:
        try:
            cast(value)
        except (ValueError, InvalidOperation):
            return False
        return True
    return check


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_SIMPLE: dict[str, Check] = {
    "int": lambda v: bool(re.fullmatch(r"-?\d+", v)) and -(2**31) <= int(v) < 2**31,
    "long": lambda v: bool(re.fullmatch(r"-?\d+", v)) and -(2**63) <= int(v) < 2**63,
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _guid,
    "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
    "decimal": _number(Decimal),
    "double": _number(float),
    "float": _number(float),
    "datetime": _datetime,
}


def _with_args(name: str, args: list[str]) -> Check:
    if name == "regex":
        pattern = re.compile(",".join(args), re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    nums = [int(a) for a in args]
    table: dict[str, Check] = {
        "length": (lambda v: len(v) == nums[0]) if len(nums) == 1 else (lambda v: nums[0] <= len(v) <= nums[1]),
        "minlength": lambda v: len(v) >= nums[0],
        "maxlength": lambda v: len(v) <= nums[0],
        "min": lambda v: _SIMPLE["long"](v) and int(v) >= nums[0],
        "max": lambda v: _SIMPLE["long"](v) and int(v) <= nums[0],
        "range": lambda v: _SIMPLE["long"](v) and nums[0] <= int(v) <= nums[-1],
    }
    return table[name]


def _constraint(name: str, args: str | None, template: str) -> Check:
    if args is None and name in _SIMPLE:
        return _SIMPLE[name]
    if args is not None and name in ("regex", "length", "minlength", "maxlength", "min", "max", "range"):
        return _with_args(name, [a.strip() for a in args.split(",")] if name != "regex" else [args])
    raise ConfigError(f"route '{template}': unsupported route constraint '{name}'")


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template: `match(path)` returns route params (strings) or None."""

    template: str
    pattern: re.Pattern[str]
    checks: dict[str, list[Check]] = field(default_factory=dict)
    precedence: tuple[int, ...] = ()

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        template = template.strip("/")
        regex = ""
        checks: dict[str, list[Check]] = {}
        precedence: list[int] = []
        for index, segment in enumerate(template.split("/") if template else []):
            seg_regex, kinds = _segment(segment, checks, template)
            regex += ("/" if index else "") + seg_regex
            precedence.append(max(kinds) if kinds else 0)
        regex = regex.replace("/(?:", "(?:/")  # an optional/catch-all segment may swallow its slash
        return cls(template, re.compile(f"^{regex}$", re.IGNORECASE), checks, tuple(precedence))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path.strip("/"))
        if not found:
            return None
        params = {k: v for k, v in found.groupdict().items() if v is not None}
        for name, checks in self.checks.items():
            if name in params and not all(check(params[name]) for check in checks):
                return None
        return params


def _segment(segment: str, checks: dict[str, list[Check]], template: str) -> tuple[str, list[int]]:
    regex, pos = "", 0
    kinds: list[int] = []
    for param in _PARAM.finditer(segment):
        regex += re.escape(segment[pos:param.start()])
        catch_all, name, constraints, optional = param.groups()
        checks[name] = [_constraint(c, a or None, template) for c, a in _CONSTRAINT.findall(constraints)]
        if catch_all:
            regex, kinds = regex + f"(?:(?P<{name}>.*))?", kinds + [3]
        else:
            group = f"(?P<{name}>[^/]+)"
            regex += f"(?:{group})?" if optional else group
            kinds.append(1 if checks[name] else 2)
        pos = param.end()
    regex += re.escape(segment[pos:])
    if "{" in segment[pos:] or "}" in segment[pos:]:
        raise ConfigError(f"route '{template}': cannot parse segment '{segment}'")
    return regex, kinds
