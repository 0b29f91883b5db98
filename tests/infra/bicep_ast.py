"""Prints the parse of every .bicep file under a folder (and azure.yaml) as JSON, for tests/infra.

Runs in .venv-infra, not in the app's .venv: pycep-parser is the Bicep parser checkov itself uses,
and it and PyYAML come with checkov's pinned dependencies (requirements-infra.txt).

    .venv-infra/bin/python tests/infra/bicep_ast.py infra azure.yaml
"""
import json
import sys
from pathlib import Path

import yaml
from pycep import BicepParser


def parse_all(root: Path) -> dict[str, object]:
    """{relative path: parsed template, or {"error": why it did not parse}} for every .bicep file."""
    parser = BicepParser()
    parsed: dict[str, object] = {}
    for path in sorted(root.rglob("*.bicep")):
        key = path.relative_to(root).as_posix()
        try:
            parsed[key] = parser.parse(text=path.read_text())
        except Exception as exc:  # reported per file to the test, which fails naming the file
            parsed[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return parsed


def main(infra: str, azure_yaml: str) -> int:
    result = {"bicep": parse_all(Path(infra)), "azure_yaml": yaml.safe_load(Path(azure_yaml).read_text())}
    json.dump(result, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
