"""Who may import what below ASGI: uvicorn's internals and httptools only in the native layer's seam, and the hub
and its readers free of HTTP, sockets and servers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ticker_service"
SEAM = {"transports/native/http.py"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules() -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): imports(p) for p in PACKAGE.rglob("*.py")}


def test_only_the_native_seam_imports_uvicorn_internals_or_httptools() -> None:
    found = {
        path
        for path, names in modules().items()
        for name in names
        if name == "httptools" or (name.startswith("uvicorn.") and name != "uvicorn")
    }
    assert found == SEAM


def test_uvicorn_itself_is_imported_by_the_seam_and_serve_only() -> None:
    found = {path for path, names in modules().items() if any(n.split(".")[0] == "uvicorn" for n in names)}
    assert found == {*SEAM, "serve.py"}


def test_the_hub_and_its_readers_know_nothing_of_http_or_sockets() -> None:
    banned = {"socket", "starlette", "uvicorn", "httptools", "websockets", "httpx"}
    for module in ("hub.py", "readers.py"):
        assert not {n.split(".")[0] for n in imports(PACKAGE / module)} & banned, module
