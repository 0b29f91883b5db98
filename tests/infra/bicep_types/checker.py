"""Checks parsed resource bodies against Azure's type definitions, as `bicep build` would.

It reads pycep's parse (tests/infra/bicep_ast.py) and reports unknown properties, wrong primitive types,
string literals outside an enum and writes to read-only properties. A value it cannot know statically
(a function call, a property access, an interpolation, a loop variable...) is not guessed at: it is
skipped and counted under its reason, so the test can print what went unchecked. The definitions come
from the azure-mgmt-* SDKs (sdk_types.py), in the entry shapes of Bicep's own type files.

Two ways it differs from Bicep, both on purpose:
- Enums are closed for literals. The SDKs' enums, like most of Bicep's, are extensible (`'Enabled' |
  'Disabled' | string`) and Bicep then accepts any string; a literal outside the listed values is nearly
  always a typo ('Enable'), so it is an error here. A string parameter still passes an extensible enum.
- pycep renders a string literal and a symbol reference alike ('name' and name are both "name"); a
  string naming a parameter, variable, resource, module or loop variable in scope is read as that
  symbol, so a literal equal to a symbol's name is checked as the symbol.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

MAPPING_HINT = ("map it to its SDK model in RESOURCE_MODELS, tests/infra/bicep_types/sdk_types.py "
                "(tests/infra/bicep_types/README.md)")
# Bicep's own resource keywords: not properties of any resource type, checked by Bicep itself.
# pycep spells a nested resource's implicit dependency `depends_on`.
RESOURCE_KEYWORDS = frozenset({"parent", "scope", "dependsOn", "depends_on"})
READ_ONLY = 2  # ObjectTypePropertyFlags.ReadOnly in bicep-types
PRIMITIVES = {"StringType": "string", "StringLiteralType": "string", "IntegerType": "int",
              "BooleanType": "bool", "ArrayType": "array", "ObjectType": "object",
              "DiscriminatedObjectType": "object", "NullType": "null"}
PARAMETER_TYPES = frozenset({"string", "int", "bool", "array", "object"})


@dataclass(frozen=True)
class TypeRef:
    """One entry of a table of type entries (shaped like Bicep's types.json; refs point within the table)."""

    types: tuple[dict[str, Any], ...]
    index: int

    @property
    def entry(self) -> dict[str, Any]:
        return self.types[self.index]

    @property
    def kind(self) -> str:
        return str(self.entry["$type"])

    def follow(self, ref: dict[str, str]) -> TypeRef:
        return TypeRef(self.types, int(ref["$ref"].removeprefix("#/")))

    def describe(self) -> str:
        """Bicep-like: 'Enabled' | 'Disabled' | string, SiteConfig, string[]."""
        if self.kind == "StringLiteralType":
            return repr(self.entry["value"])
        if self.kind == "UnionType":
            return " | ".join(self.follow(e).describe() for e in self.entry["elements"])
        if self.kind == "ArrayType":
            return f"{self.follow(self.entry['itemType']).describe()}[]"
        return str(self.entry.get("name") or PRIMITIVES.get(self.kind, self.kind))

    def members(self) -> list[TypeRef]:
        """A union's members, or the type itself."""
        if self.kind == "UnionType":
            return [self.follow(ref) for ref in self.entry["elements"]]
        return [self]

    def admits(self, kind: str) -> bool:
        """Whether some value of this primitive kind can be assigned to the type."""
        return any(member.kind == "AnyType" or PRIMITIVES.get(member.kind) == kind for member in self.members())

    def has_literals(self) -> bool:
        return any(member.kind == "StringLiteralType" for member in self.members())

    def accepts_any_string(self) -> bool:
        return any(member.kind in ("StringType", "AnyType") for member in self.members())

    def narrow(self, kind: str) -> TypeRef:
        """The member of a union that has this primitive kind (the union itself when none or several do)."""
        matching = [member for member in self.members() if PRIMITIVES.get(member.kind) == kind]
        return matching[0] if len(matching) == 1 else self


class Library(Protocol):
    def resource(self, type_and_version: str) -> TypeRef | None:
        """The body type of a `type@apiVersion`, or None when the library has no definition for it."""


@dataclass(frozen=True)
class Finding:
    """An error, located as file, resource symbol and property path."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    checked: int = 0
    resources: int = 0

    def merge(self, other: Report) -> None:
        self.findings += other.findings
        self.skipped.update(other.skipped)
        self.checked += other.checked
        self.resources += other.resources


@dataclass(frozen=True)
class Scope:
    """The symbols a value can name: the template's declarations plus the enclosing loops' variables."""

    tree: dict[str, Any]
    loop_variables: frozenset[str] = frozenset()

    def with_loop(self, loop: dict[str, Any]) -> Scope:
        detail = loop["detail"]
        names = {detail[key] for key in ("item_name", "index_name") if detail.get(key)}
        return Scope(self.tree, self.loop_variables | names)

    def symbol(self, name: str) -> str | None:
        """What kind of symbol `name` is here, or None for a string literal."""
        if name in self.loop_variables:
            return "loop variable"
        for kind in ("parameters", "variables", "resources", "modules"):
            if name in self.tree.get(kind, {}):
                return kind
        return None


def unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def is_interpolated(text: str) -> bool:
    return "${" in text


def expression_kind(value: dict[str, Any]) -> str | None:
    """pycep's non-literal shapes: {"function": ...}, {"operator": ...}, a for-expression."""
    if set(value) == {"function"} and isinstance(value["function"], dict):
        return "function call"
    if set(value) == {"operator"} and isinstance(value["operator"], dict) and "operands" in value["operator"]:
        return str(value["operator"]["type"])
    if {"loop_type", "config"} <= set(value):
        return "for"
    return None


class Checker:
    """Checks one template's resources; `check_template` returns what it found and what it skipped."""

    def __init__(self, library: Library, path: str, tree: dict[str, Any]) -> None:
        self.library = library
        self.path = path
        self.scope = Scope(tree)

    def check_template(self) -> Report:
        report = Report()
        for symbol, resource in self.scope.tree.get("resources", {}).items():
            report.merge(self.check_resource(symbol, resource))
        return report

    def check_resource(self, symbol: str, resource: dict[str, Any]) -> Report:
        report = Report(resources=1)
        name = f"{resource['type']}@{resource['api_version']}"
        body_type = self.library.resource(name)
        if body_type is None:
            report.findings.append(Finding(f"{self.path} {symbol}", f"no type definition for {name}: "
                                           f"{MAPPING_HINT}"))
            return report
        config, scope = resource["config"], self.scope
        while "config" in config and ("loop_type" in config or "condition" in config):
            if config.get("loop_type"):
                scope = scope.with_loop(config["loop_type"])
            config = config["config"]
        body = {key: value for key, value in config.items() if key not in RESOURCE_KEYWORDS}
        report.merge(self.check(body, body_type, f"{self.path} {symbol}", scope))
        return report

    def check(self, value: Any, target: TypeRef, where: str, scope: Scope) -> Report:
        """Whether `value` (pycep's rendering) can be assigned to `target`."""
        if target.kind == "AnyType" or value is None:
            return Report(checked=1)
        if isinstance(value, str):
            return self.check_string(value, target, where, scope)
        if isinstance(value, dict) and (kind := expression_kind(value)) is not None:
            return self.check_expression(kind, value, target, where, scope)
        return self.check_literal(value, target, where, scope)

    def check_string(self, value: str, target: TypeRef, where: str, scope: Scope) -> Report:
        symbol = scope.symbol(value)
        if symbol == "parameters":
            return self.check_parameter(value, target, where)
        if symbol == "variables":
            variable = self.scope.tree["variables"][value]["value"]
            return self.check(variable, target, f"{where} (variable {value})", self.scope)
        if symbol is not None:
            return skipped("resource or module symbol" if symbol in ("resources", "modules") else symbol)
        if is_interpolated(value):
            return self.check_interpolation(target, where)
        return self.check_literal(value, target, where, scope)

    def check_interpolation(self, target: TypeRef, where: str) -> Report:
        """An interpolated string is a string whose value is unknown."""
        if not target.admits("string"):
            return mismatch(where, "string", target)
        if target.has_literals():
            return skipped("interpolated string (enum value unknown)")
        return Report(checked=1)

    def check_parameter(self, name: str, target: TypeRef, where: str) -> Report:
        """A parameter is checked by its declared type and @allowed values, as Bicep does."""
        declared = self.scope.tree["parameters"][name]
        kind = declared.get("type")
        if kind not in PARAMETER_TYPES:
            return skipped("parameter of a user-defined type")
        allowed = next((d["argument"] for d in declared.get("decorators", []) if d["type"] == "allowed"), None)
        if allowed is not None:
            report = Report()
            for value in allowed:
                report.merge(self.check_literal(value, target, f"{where} (parameter {name}, @allowed)",
                                                self.scope))
            return report
        if not target.admits(kind):
            return mismatch(where, f"{kind} (parameter {name})", target)
        if kind == "string" and target.has_literals() and not target.accepts_any_string():
            return fail(where, f"parameter {name} is any string, the property takes only {target.describe()}: "
                               "give the parameter @allowed values")
        return skipped("parameter (declared type checked, value unknown)")

    def check_expression(self, kind: str, value: dict[str, Any], target: TypeRef, where: str,
                         scope: Scope) -> Report:
        value = reassociate_ternary(value)
        kind = expression_kind(value) or kind
        if kind == "conditional":
            operands = value["operator"]["operands"]
            report = self.check(operands["true_value"], target, f"{where} (if true)", scope)
            report.merge(self.check(operands["false_value"], target, f"{where} (if false)", scope))
            return report
        if kind == "for":
            return self.check_for(value, target, where, scope)
        if kind in ("property_accessor", "index_accessor"):
            return skipped("property or index access")
        return skipped("function call" if kind == "function call" else f"operator expression ({kind})")

    def check_for(self, value: dict[str, Any], target: TypeRef, where: str, scope: Scope) -> Report:
        """A for-expression is an array whose items all have its body's shape."""
        target = target.narrow("array")
        if target.kind != "ArrayType":
            return mismatch(where, "array (for-expression)", target)
        item = target.follow(target.entry["itemType"])
        return self.check(value["config"], item, f"{where}[for]", scope.with_loop(value["loop_type"]))

    def check_literal(self, value: Any, target: TypeRef, where: str, scope: Scope) -> Report:
        kind = literal_kind(value)
        if target.kind == "AnyType":
            return Report(checked=1)
        if target.kind == "UnionType":
            return self.check_union(value, kind, target, where, scope)
        if target.kind == "StringLiteralType" and kind == "string":
            return self.check_enum(value, [target], where)
        if PRIMITIVES.get(target.kind) != kind:
            return mismatch(where, kind, target)
        if kind == "array":
            item = target.follow(target.entry["itemType"])
            report = Report(checked=1)
            for number, element in enumerate(value):
                report.merge(self.check(element, item, f"{where}[{number}]", scope))
            return report
        if target.kind == "DiscriminatedObjectType":
            return self.check_discriminated(value, target, where, scope)
        if kind == "object":
            return self.check_object(value, target.entry.get("properties", {}), target, where, scope)
        return Report(checked=1)

    def check_union(self, value: Any, kind: str, target: TypeRef, where: str, scope: Scope) -> Report:
        members = target.members()
        literals = [member for member in members if member.kind == "StringLiteralType"]
        if kind == "string" and literals:
            return self.check_enum(value, literals, where)
        if any(member.kind == "AnyType" for member in members):
            return Report(checked=1)
        same_kind = [member for member in members if PRIMITIVES.get(member.kind) == kind]
        if not same_kind:
            return mismatch(where, kind, target)
        reports = [self.check_literal(value, member, where, scope) for member in same_kind]
        return next((report for report in reports if not report.findings), reports[0])

    @staticmethod
    def check_enum(value: Any, literals: list[TypeRef], where: str) -> Report:
        allowed = [member.entry["value"] for member in literals]
        if value in allowed:
            return Report(checked=1)
        hint = next((f" (did you mean {option!r}?)" for option in allowed
                     if isinstance(value, str) and option.lower() == value.lower()), "")
        listed = " | ".join(repr(option) for option in allowed)
        return fail(where, f"{value!r} is not one of {listed}{hint}")

    def check_discriminated(self, value: dict[str, Any], target: TypeRef, where: str, scope: Scope) -> Report:
        entry = target.entry
        discriminator = entry["discriminator"]
        chosen = {unquote(key): item for key, item in value.items()}.get(discriminator)
        if not isinstance(chosen, str) or scope.symbol(chosen) or is_interpolated(chosen):
            return skipped("discriminator value not static")
        if chosen not in entry["elements"]:
            return fail(f"{where}.{discriminator}", f"{chosen!r} is not one of {sorted(entry['elements'])} "
                                                    f"({entry['name']})")
        variant = target.follow(entry["elements"][chosen])
        properties = {**entry["baseProperties"], **variant.entry["properties"]}
        return self.check_object(value, properties, variant, where, scope)

    def check_object(self, value: dict[str, Any], properties: dict[str, Any], target: TypeRef, where: str,
                     scope: Scope) -> Report:
        report = Report(checked=1)
        extra = target.entry.get("additionalProperties")
        for raw_key, item in value.items():
            key = unquote(raw_key)
            path = f"{where}.{key}"
            if key in properties:
                report.merge(self.check_property(item, properties[key], target, path, scope))
            elif extra is not None:
                report.merge(self.check(item, target.follow(extra), path, scope))
            elif is_interpolated(key):
                report.merge(skipped("interpolated property name"))
            else:
                report.merge(unknown_property(key, properties, target, path))
        return report

    def check_property(self, value: Any, declared: dict[str, Any], owner: TypeRef, where: str,
                       scope: Scope) -> Report:
        if declared["flags"] & READ_ONLY:
            return fail(where, f"is read-only in {owner.describe()}: Azure sets it, a template cannot")
        return self.check(value, owner.follow(declared["type"]), where, scope)


def reassociate_ternary(value: dict[str, Any]) -> dict[str, Any]:
    """pycep binds `?:` tighter than binary operators, so `a == b ? c : d` arrives as `a == (b ? c : d)`;
    in Bicep the ternary binds loosest, so it is read back as `(a == b) ? c : d`."""
    operator = value.get("operator")
    if not isinstance(operator, dict) or set(operator.get("operands", {})) != {"operand_1", "operand_2"}:
        return value
    right = operator["operands"]["operand_2"]
    if not (isinstance(right, dict) and expression_kind(right) == "conditional"):
        return value
    ternary = right["operator"]["operands"]
    condition = {"operator": {"type": operator["type"],
                              "operands": {"operand_1": operator["operands"]["operand_1"],
                                           "operand_2": ternary["condition"]}}}
    return {"operator": {"type": "conditional", "operands": {**ternary, "condition": condition}}}


def literal_kind(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"pycep produced an unexpected literal: {value!r}")


def skipped(reason: str) -> Report:
    return Report(skipped=Counter({reason: 1}))


def fail(where: str, message: str) -> Report:
    return Report(findings=[Finding(where, message)])


def mismatch(where: str, given: str, target: TypeRef) -> Report:
    return fail(where, f"is {given}, the property takes {target.describe()}")


def unknown_property(key: str, properties: dict[str, Any], target: TypeRef, where: str) -> Report:
    writable = sorted(name for name, declared in properties.items() if not declared["flags"] & READ_ONLY)
    near = [name for name in writable if name.lower() == key.lower()]
    hint = f"did you mean {near[0]!r}?" if near else f"it takes {', '.join(writable)}"
    return fail(where, f"{target.describe()} has no property {key!r} ({hint})")
