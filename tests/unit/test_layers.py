"""uvicorn's internals and httptools only in the native layer's seam (``transports/native/http.py``).

Finer than the import-linter contracts in ``pyproject.toml`` (which see ``uvicorn`` as one package, and keep it to
``serve.py`` and ``transports/native/``, and the hub, its readers and the wire bytes free of HTTP and sockets)."""

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
