"""The web dashboard's files (dashboard/) as served: content-hashed names, media types, the sign-in the page is
told to use, and its Content-Security-Policy. api/dashboard.py serves them.

Every file is named by the hash of its content, with its references to other files rewritten first, so a new
version of a file has a new name (served `immutable`) and no browser runs a stale mix. Only the manifest's files
exist for the server: no path reaches outside dashboard/.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from shared.settings import Settings, parse_list

ROOT = Path(__file__).resolve().parents[2] / "dashboard"
# Every file served, by its path under dashboard/. A file names another as the quoted string "./<path>", which
# is rewritten to the other's hashed name: an edit changes the names of the files that refer to it, too.
MANIFEST = (
    "index.html", "app.css", "favicon.svg", "app.js", "api.js", "auth.js", "dom.js", "format.js", "jobs.js",
    "job.js", "stream.js", "submit.js", "signin.js", "ui.js", "vendor/msal-browser.min.js",
)
ENTRY = "index.html"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
IMMUTABLE = "public, max-age=31536000, immutable"
DEV_TOKEN_PATH = "/.devhost/token"  # a URL path (devhost's dev token route, devhost/devauth.py), not a secret  # nosec B105
_REFERENCE = re.compile(rb"""(["'])\./([A-Za-z0-9_./-]+)\1""")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


@dataclass(frozen=True)
class Bundle:
    """The files as served: `index.html`, and the others by their hashed names."""

    index: bytes
    assets: Mapping[str, Asset]


def build_bundle(root: Path, manifest: Sequence[str], entry: str = ENTRY) -> Bundle:
    """Read the manifest's files, name each by the hash of its content after its own references are rewritten
    (files that refer to each other in a cycle are refused), and rewrite the entry page's references."""
    sources = {name: (root / name).read_bytes() for name in manifest}
    hashed: dict[str, str] = {}
    bodies: dict[str, bytes] = {}

    def visit(name: str, referrers: tuple[str, ...]) -> None:
        if name in referrers:
            raise ValueError(f"dashboard files refer to each other in a cycle: {' -> '.join((*referrers, name))}")
        if name not in hashed:
            for ref in _references(sources[name], sources):
                visit(ref, (*referrers, name))
            bodies[name] = _rewritten(sources[name], hashed)
            hashed[name] = hashed_name(name, bodies[name])

    for name in manifest:
        visit(name, ())
    assets = {hashed[name]: Asset(bodies[name], media_type(name)) for name in manifest if name != entry}
    return Bundle(index=bodies[entry], assets=assets)


def hashed_name(name: str, body: bytes) -> str:
    """`app.js` -> `app.<first 12 hex digits of its SHA-256>.js`."""
    path = PurePosixPath(name)
    return str(path.with_name(f"{path.stem}.{hashlib.sha256(body).hexdigest()[:12]}{path.suffix}"))


def media_type(name: str) -> str:
    return MEDIA_TYPES[PurePosixPath(name).suffix]


def _references(body: bytes, sources: Mapping[str, bytes]) -> list[str]:
    return [ref for ref in (m[2].decode() for m in _REFERENCE.finditer(body)) if ref in sources]


def _rewritten(body: bytes, hashed: Mapping[str, str]) -> bytes:
    def rename(match: re.Match[bytes]) -> bytes:
        name = match[2].decode()
        return match[0] if name not in hashed else match[1] + f"./{hashed[name]}".encode() + match[1]

    return _REFERENCE.sub(rename, body)


def sign_in_config(settings: Settings, roles: Sequence[str]) -> dict[str, Any]:
    """What `config.json` says: dev tokens from devhost when the app accepts them (TRAWL_AUTH_MODE=dev), Entra ID
    when a client id is configured (TRAWL_DASHBOARD_CLIENT_ID), else that signing in is not set up. `roles`: the
    app roles a dev user may pick, and whose delegated scopes the Entra sign-in asks for."""
    tenant = next(iter(parse_list(settings.auth_tenant_ids)), "")
    audience = next(iter(parse_list(settings.auth_audiences)), "")
    if settings.auth_mode == "dev":
        return {"sign_in": "dev", "token_url": DEV_TOKEN_PATH, "tenant": tenant, "audience": audience,
                "roles": list(roles)}
    if settings.dashboard_client_id:
        return {"sign_in": "entra", "client_id": settings.dashboard_client_id, "authority": entra_authority(settings),
                "scopes": entra_scopes(settings, audience, roles), "roles": list(roles)}
    return {"sign_in": "none", "detail": "Sign-in is not configured: set TRAWL_DASHBOARD_CLIENT_ID."}


def entra_authority(settings: Settings) -> str:
    tenant = next(iter(parse_list(settings.auth_tenant_ids)), "organizations")
    return settings.dashboard_authority or f"https://login.microsoftonline.com/{tenant}"


def entra_scopes(settings: Settings, audience: str, roles: Sequence[str]) -> list[str]:
    """The configured scopes, or the API's delegated scopes (one per role) under its application id URI."""
    if settings.dashboard_scopes:
        return parse_list(settings.dashboard_scopes)
    api = audience if "://" in audience else f"api://{audience}"
    return [f"{api}/{role}" for role in roles]


def content_security_policy(sign_in: Mapping[str, Any]) -> str:
    """Only this origin's files run; with Entra ID, MSAL.js may also call the authority's host."""
    connect = "'self'"
    if sign_in["sign_in"] == "entra":
        parts = urlsplit(sign_in["authority"])
        connect += f" {parts.scheme}://{parts.netloc}"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {connect}; form-action 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
