"""arq's view of the worker: ``arq workers.settings.WorkerSettings`` (with ``REDIS_URL`` set).

``ticker worker`` runs the same functions with the wake-up added (:mod:`workers.worker`); both take their options
from :func:`workers.worker.worker_options`. arq reads this class, so the settings are read here, once, on import.
"""

from __future__ import annotations

from typing import Any

from ticker_service.push.settings import PushSettings
from ticker_service.settings import Settings

from .worker import worker_options


def _options() -> dict[str, Any]:
    settings = Settings()
    if settings.embedded:  # arq's own default: a Redis on this machine
        settings = settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379"})
    return worker_options(settings, PushSettings(), woken=False)  # a plain arq Worker hears no wake-up


_OPTIONS = _options()


class WorkerSettings:
    """For ``arq workers.settings.WorkerSettings``; ``ticker worker`` is the same with the wake-up added."""

    functions = _OPTIONS["functions"]
    redis_settings = _OPTIONS["redis_settings"]
    redis_pool = _OPTIONS["redis_pool"]  # with TICKER_REDIS_TIMEOUT_SECONDS on every command
    on_startup = _OPTIONS["on_startup"]
    on_shutdown = _OPTIONS["on_shutdown"]
    ctx = _OPTIONS["ctx"]
    poll_delay = _OPTIONS["poll_delay"]
    keep_result = _OPTIONS["keep_result"]
    health_check_interval = _OPTIONS["health_check_interval"]
