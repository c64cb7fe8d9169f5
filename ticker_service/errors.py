"""The service's own exceptions, and what "Redis is down" means; no HTTP here, so the core (broker, hub, stores,
worker) can use them.

Hierarchy::

    TickerError
    ├── Problem                 an HTTP error with a status and a problem body (:mod:`ticker_service.problems`)
    └── BrokerUnavailable       Redis (or the broker) cannot be reached: answered with 503
"""

from __future__ import annotations

from redis import exceptions as redis_errors


class TickerError(Exception):
    """Root of the service's own exceptions."""


class BrokerUnavailable(TickerError):
    """The history/broker backend did not answer; nothing was written."""


# What redis-py raises when the server cannot be reached or does not answer in time.
REDIS_UNREACHABLE: tuple[type[Exception], ...] = (redis_errors.ConnectionError, redis_errors.TimeoutError)
# "Redis is down": the above, or a socket error that reaches us unwrapped. The stores and the broker turn it into
# BrokerUnavailable (503); anything else from Redis (a script error, a wrong type) is a bug and is not caught.
REDIS_DOWN: tuple[type[Exception], ...] = (*REDIS_UNREACHABLE, OSError)
