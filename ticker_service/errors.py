"""The service's own exceptions; no HTTP here, so the core (broker, hub, stores, worker) can raise them.

Hierarchy::

    TickerError
    ├── Problem                 an HTTP error with a status and a problem body (:mod:`ticker_service.problems`)
    └── BrokerUnavailable       Redis (or the broker) cannot be reached: answered with 503
"""

from __future__ import annotations


class TickerError(Exception):
    """Root of the service's own exceptions."""


class BrokerUnavailable(TickerError):
    """The history/broker backend did not answer; nothing was written."""
