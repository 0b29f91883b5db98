"""The web dashboard at `/api/app/` (shared/contract/dashboard.py says how its files are named and signed in to).

- `GET /api/app/` answers `index.html` (`no-cache`), naming the other files by their hashed names;
- `GET /api/app/<name>.<hash>.<ext>` answers a file the manifest lists (`immutable`, a year);
- `GET /api/app/config.json` tells the page how to sign in: Entra ID through MSAL.js, or devhost's dev tokens;
- anything else is a 404 problem. Client-side routes live in the URL's fragment (`#/jobs/...`) and never reach
  the server.

Every answer carries a strict Content-Security-Policy: scripts, styles and images from this origin only (no
inline code or style attributes), connections to this origin and, with Entra ID, its sign-in host.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from api.callers import ADMIN, READ, SUBMIT
from api.http import SECURITY_HEADERS, handles_errors
from shared.contract.dashboard import (
    ENTRY,
    IMMUTABLE,
    MANIFEST,
    ROOT,
    Bundle,
    build_bundle,
    content_security_policy,
    media_type,
    sign_in_config,
)
from shared.domain.errors import NotFound
from shared.settings import get_settings

bp = func.Blueprint()

APP_ROLES = (READ, SUBMIT, ADMIN)


@cache
def bundle() -> Bundle:
    """Built on first use, not at import: a missing file fails the dashboard, never the whole Function App."""
    return build_bundle(ROOT, MANIFEST)


@cache
def _current_sign_in() -> dict[str, Any]:
    return sign_in_config(get_settings(), APP_ROLES)


@bp.route(route="app/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path") or ""
    if not path and not urlsplit(req.url).path.endswith("/"):
        return _response(b"", "text/plain; charset=utf-8", "no-cache", 308, {"Location": "app/"})
    if not path:
        return _response(bundle().index, media_type(ENTRY), "no-cache")
    if path == "config.json":
        return _response(json.dumps(_current_sign_in()).encode(), "application/json", "no-cache")
    asset = bundle().assets.get(path)
    if asset is None:
        raise NotFound(f"the dashboard has no file {path}")
    return _response(asset.body, asset.media_type, IMMUTABLE)


def _response(body: bytes, content_type: str, cache_control: str, status: int = 200,
              extra: Mapping[str, str] | None = None) -> func.HttpResponse:
    headers = {**SECURITY_HEADERS, "Content-Type": content_type, "Cache-Control": cache_control,
               "Content-Security-Policy": content_security_policy(_current_sign_in()), **(extra or {})}
    return func.HttpResponse(body, status_code=status, headers=headers)
