"""The service's own exceptions, and what "Redis is down" means; no HTTP here, so the core (broker, hub, stores,
worker) can use them.

Hierarchy::

    TickerError
    ├── Problem                 an HTTP error with a status and a problem body (:mod:`ticker_service.problems`)
    └── BrokerUnavailable       Redis (or the broker) cannot be reached: answered with 503
"""

from __future__ import annotations

from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser


class TickerError(Exception):
    """Root of the service's own exceptions."""


class BrokerUnavailable(TickerError):
    """The history/broker backend did not answer; nothing was written."""


class WritesRefused(redis_errors.ResponseError):
    """``NOREPLICAS``: the master refuses writes while fewer replicas than ``min-replicas-to-write`` are in sync
    (set so that a failover cannot lose what was acknowledged: docs/deployment.md)."""


# redis-py raises a bare ResponseError for NOREPLICAS, as for a bug; its own table of reply prefixes gives it a class.
BaseParser.EXCEPTION_CLASSES.setdefault("NOREPLICAS", WritesRefused)

# What redis-py raises when the server cannot be reached or does not answer in time.
REDIS_UNREACHABLE: tuple[type[Exception], ...] = (redis_errors.ConnectionError, redis_errors.TimeoutError)
# "Redis is down": the above, a socket error that reaches us unwrapped, or a server that cannot take writes now (no
# replica in sync; a master demoted under a direct REDIS_URL: READONLY). The stores and the broker turn it into
# BrokerUnavailable (503); anything else from Redis (a script error, a wrong type) is a bug and is not caught.
REDIS_DOWN: tuple[type[Exception], ...] = (*REDIS_UNREACHABLE, OSError, WritesRefused, redis_errors.ReadOnlyError)
