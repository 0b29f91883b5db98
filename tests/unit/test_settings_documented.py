"""Every setting the app reads is in local.settings.sample.json and the README's configuration table."""
import json
import re
from pathlib import Path

from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# Set by the platform on every Azure instance; a local value would wrongly disable dev auth.
PLATFORM = {"WEBSITE_INSTANCE_ID"}
APP_CODE = ["function_app.py", "host.json", "api", "shared", "activities", "orchestrators"]


def _settings_fields() -> set[str]:
    return {f.validation_alias or f"TRAWL_{name.upper()}" for name, f in Settings.model_fields.items()}  # type: ignore[misc]


def _names_in_code() -> set[str]:
    """TRAWL_* names and %SETTING% references anywhere in the app's code and host.json."""
    found: set[str] = set()
    for entry in APP_CODE:
        root = REPO / entry
        for path in [root] if root.is_file() else root.rglob("*.py"):
            text = path.read_text()
            found |= set(re.findall(r"\b(TRAWL_[A-Z_]+[A-Z])\b", text)) | set(re.findall(r"%([A-Z][A-Za-z0-9_]+)%", text))
    return found


def _readme_table() -> set[str]:
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- settings:start -->")[1].split("<!-- settings:end -->")[0]
    return set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))


def _sample() -> set[str]:
    return set(json.loads((REPO / "local.settings.sample.json").read_text())["Values"])


def test_every_setting_read_is_documented_in_the_readme() -> None:
    assert (_settings_fields() | _names_in_code()) - _readme_table() == set()


def test_every_setting_read_is_in_the_sample() -> None:
    assert (_settings_fields() | _names_in_code()) - PLATFORM - _sample() == set()


def test_every_sample_key_is_documented() -> None:
    assert _sample() - _readme_table() == set()
