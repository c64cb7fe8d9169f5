"""The browser side the hub serves: the JavaScript client (``clients/js``), the demo page and the editor console.

The scripts are served under ``/static/js/<version>/`` with a version made from their contents, cached for a year:
a page that imports ``ticker.js`` from there gets modules that belong together, and a new release is a new URL.
``/static/js/<name>`` (no version) is for embedders who want the current release; it is revalidated every time.
Scripts carry ``Access-Control-Allow-Origin: *`` because a module script from another origin needs it.
"""

from __future__ import annotations

import hashlib
import html
import re
from functools import cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from ..settings import Settings

STATIC = Path(str(resources.files("ticker_service") / "static"))
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}\.js$")
SCRIPT_HEADERS = {"X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


def client_dir() -> Path:
    """Where the JavaScript client is: copied into the package by an image build, else the source tree's
    ``clients/js`` (a checkout, or the editable install that ``scripts/setup`` makes)."""
    packaged = STATIC / "js"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "clients" / "js"  # ticker_service/api/pages.py -> the repo


@cache
def scripts() -> tuple[str, dict[str, Path]]:
    """``(version, {name: path})`` of the client's modules, read once per process."""
    directory = client_dir()
    files = {p.name: p for p in sorted(directory.glob("*.js")) if _NAME.match(p.name)}
    digest = hashlib.sha256()
    for name, path in files.items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12], files


def script_base() -> str:
    """The versioned URL prefix of the client's modules."""
    return f"/static/js/{scripts()[0]}"


async def script(request: Request) -> Response:
    version, files = scripts()
    path = files.get(request.path_params["name"])
    if path is None:
        return Response("no such script\n", 404, media_type="text/plain")
    asked = request.path_params.get("version")
    cache_control = "public, max-age=31536000, immutable" if asked == version else "no-cache"
    return FileResponse(path, media_type="text/javascript", headers={**SCRIPT_HEADERS, "Cache-Control": cache_control})


def _render(name: str, settings: Settings) -> str:
    """A page from ``static/``, with the script prefix and the configured categories and regions filled in."""
    text = (STATIC / name).read_text(encoding="utf-8")
    categories = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in settings.categories)
    regions = "".join(
        f'<label><input type="checkbox" name="regions" value="{html.escape(r)}"> {html.escape(r)}</label>'
        for r in settings.regions
    )
    return text.replace("{{js}}", script_base()).replace("{{categories}}", categories).replace("{{regions}}", regions)


async def index(request: Request) -> Response:
    return HTMLResponse(_render("index.html", request.app.state.settings), headers=PAGE_HEADERS)


async def editor(request: Request) -> Response:
    return HTMLResponse(_render("editor.html", request.app.state.settings), headers=PAGE_HEADERS)


def routes() -> list[Route]:
    return [
        Route("/", index),
        Route("/editor", editor),
        Route("/static/js/{version:str}/{name:str}", script),
        Route("/static/js/{name:str}", script),
    ]
