"""``python -m bench <benchmark> [options]``: run one benchmark against real ticker processes on loopback."""

from __future__ import annotations

import sys

from . import fanout, ingest, latency, push, scale, storm

BENCHMARKS = {
    "latency": latency.main,
    "fanout": fanout.main,
    "push": push.main,
    "ingest": ingest.main,
    "storm": storm.main,
    "scale": scale.main,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        names = ", ".join(BENCHMARKS)
        print(f"usage: python -m bench {{{names}}} [options]  (python -m bench latency --help)", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return BENCHMARKS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
