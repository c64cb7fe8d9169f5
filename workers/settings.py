"""arq's view of the worker: ``arq workers.settings.WorkerSettings`` (with ``REDIS_URL`` set).

``ticker worker`` runs the same functions with the wake-up added (:mod:`workers.worker`).
"""

from __future__ import annotations

from arq.connections import RedisSettings
from arq.worker import func

from ticker_service.keys import FANOUT_JOB
from ticker_service.settings import Settings

from . import push
from .fanout import fanout_job
from .worker import shutdown, startup


class WorkerSettings:
    """For ``arq workers.settings.WorkerSettings``; ``ticker worker`` is the same with the wake-up added."""

    functions = [func(fanout_job, name=FANOUT_JOB, timeout=3.0, max_tries=50), *push.functions(3.0)]
    on_startup = startup
    on_shutdown = shutdown
    poll_delay = 0.05
    keep_result = 60
    health_check_interval = 10
    redis_settings = RedisSettings.from_dsn(Settings().redis_url or "redis://127.0.0.1:6379")
