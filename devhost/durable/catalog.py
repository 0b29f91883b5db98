"""The app's orchestrator and activity functions, looked up by name the way the Durable extension does."""
from __future__ import annotations

from dataclasses import dataclass

from devhost.indexing import FunctionSpec


class UnknownFunctionError(Exception):
    """A Durable call names a function the app does not define (with the extension's message)."""


@dataclass(frozen=True)
class FunctionCatalog:
    """Orchestrators and activities keyed by lower-cased name: Functions names are case-insensitive."""

    orchestrators: dict[str, FunctionSpec]
    activities: dict[str, FunctionSpec]

    @classmethod
    def from_functions(cls, functions: list[FunctionSpec]) -> FunctionCatalog:
        def of_type(trigger_type: str) -> dict[str, FunctionSpec]:
            return {f.name.lower(): f for f in functions if f.trigger_type == trigger_type}

        return cls(orchestrators=of_type("orchestrationTrigger"), activities=of_type("activityTrigger"))

    def orchestrator(self, name: str) -> FunctionSpec:
        """The orchestrator called `name`, or UnknownFunctionError worded like the extension's."""
        return self._find(self.orchestrators, name, "orchestrator")

    def activity(self, name: str) -> FunctionSpec:
        """The activity called `name`, or UnknownFunctionError worded like the extension's."""
        return self._find(self.activities, name, "activity")

    @staticmethod
    def _find(functions: dict[str, FunctionSpec], name: str, kind: str) -> FunctionSpec:
        spec = functions.get(name.lower())
        if spec is None:
            known = ", ".join(sorted(f.name for f in functions.values())) or "none"
            raise UnknownFunctionError(
                f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. "
                f"Additional info: the following are the known {kind} functions: {known}."
            )
        return spec
