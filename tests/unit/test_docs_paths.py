"""Every repository path the docs, azd's azure.yaml and its hooks name exists, so a rename or a removal
cannot leave a reader (or `azd up`) pointed at nothing."""
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "bench/README.md", "azure.yaml", "infra/hooks/preprovision.sh",
             "infra/hooks/postprovision.sh", "Makefile", "local.settings.sample.json"]
# A relative path of two or more parts ending in a file name; not the middle of a URL or of a longer path.
PATH = re.compile(r"(?<![\w./:-])((?:[\w.-]+/)+[\w.-]+\.[a-z]{1,5})\b")


def tracked() -> set[str]:
    """Tracked files and every folder above them, as paths relative to the repository."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return set(files) | {str(parent) for name in files for parent in Path(name).parents if str(parent) != "."}


def named_paths(document: str, known: set[str]) -> set[str]:
    """Paths the document names under a tracked top-level folder (other paths are URLs, routes or examples)."""
    text = (REPO / document).read_text(encoding="utf-8")
    return {path for path in PATH.findall(text) if path.split("/", 1)[0] in known}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_named_files_exist(document: str) -> None:
    known = tracked()
    missing = sorted(path for path in named_paths(document, known) if path not in known)
    assert not missing, f"{document} names files that do not exist: {missing}"


def test_the_check_sees_the_paths_it_should() -> None:
    known = tracked()
    assert {"infra/apim/openapi.json", "infra/hooks/postprovision.sh"} <= named_paths("README.md", known)
    assert "infra/hooks/postprovision.sh" in named_paths("azure.yaml", known)
