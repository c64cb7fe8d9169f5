"""prometheus-client's multiprocess directory, prepared before the metrics module is imported (prometheus-client
reads ``PROMETHEUS_MULTIPROC_DIR`` when a metric is created, and the directory must exist by then)."""

from __future__ import annotations

import glob
import os
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_dir() -> None:
    """If a directory is configured, make sure it exists (a worker may start before the hubs)."""
    directory = multiprocess_dir()
    if directory is not None:
        os.makedirs(directory, exist_ok=True)


def prepare(port: int) -> None:
    """Before several hub processes start: use ``PROMETHEUS_MULTIPROC_DIR`` or a directory of our own, and drop
    the files of processes that are gone (prometheus-client wants the directory wiped between runs; a worker on
    this host may share it and still be running)."""
    directory = multiprocess_dir() or os.path.join(tempfile.gettempdir(), f"ticker-metrics-{os.getuid()}-{port}")
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        pid = path.rsplit("_", 1)[-1].removesuffix(".db")
        if not pid.isdigit() or not alive(int(pid)):
            os.remove(path)
    os.environ[MULTIPROC_ENV] = directory
