"""CPU time and resident memory of process trees, read from ``/proc`` (Linux only).

A server is measured as the whole tree under its root process(es), summed over every live descendant:

* ``cpu_stat``: ``utime + stime`` from ``/proc/PID/stat``, plus ``cutime + cstime`` (children that exited and
  were reaped), in clock ticks (10 ms): too coarse for the ~20–150 ms that 1,000 handshakes cost;
* ``cpu``: the same on-CPU time with nanosecond resolution, the sum of the scheduler's ``sum_exec_runtime`` of
  every thread (``/proc/PID/task/TID/schedstat``, first field), plus the reaped children's ticks. Where
  schedstat is missing (a kernel without ``CONFIG_SCHED_INFO``) it is ``cpu_stat``;
* ``rss``: resident set size. Shared pages (nginx's shared memory zone, copy-on-write pages after a fork) are
  counted once per process that maps them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    """CPU seconds (precise; and from /proc/PID/stat's ticks: total, user, system) and RSS bytes of processes."""

    cpu: float
    cpu_stat: float
    user: float
    system: float
    rss: int
    processes: int


@dataclass(frozen=True)
class _Reading:
    cpu: float
    user: float
    system: float
    rss: int


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name (which may hold spaces): field 3 (state) is index 0."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # gone, or never there
        return None
    return text[text.rindex(")") + 2 :].split()


def _threads_runtime(pid: int) -> float | None:
    """Seconds on CPU of all the threads of ``pid`` now alive, or None without schedstat."""
    total = 0
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def _read(pid: int) -> _Reading | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # utime, stime, cutime, cstime are fields 14-17; rss (pages) is field 24.
    user, system = (int(fields[11]) + int(fields[13])) / CLOCK_TICKS, (int(fields[12]) + int(fields[14])) / CLOCK_TICKS
    runtime = _threads_runtime(pid)
    cpu = user + system if runtime is None else runtime + (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return _Reading(cpu, user, system, int(fields[21]) * PAGE_BYTES)


def descendants(roots: Iterable[int]) -> set[int]:
    """``roots`` and every live process below them."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid for pid in roots if (PROC / str(pid)).exists()]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def usage(roots: Iterable[int]) -> Usage:
    """What the trees under ``roots`` have used so far."""
    return usage_by_group({"all": list(roots)})["all"]


def usage_by_group(groups: dict[str, list[int]]) -> dict[str, Usage]:
    """``usage`` of several sets of trees, from one reading of each process (so a group holding another adds up)."""
    readings: dict[int, _Reading | None] = {}
    found = {}
    for name, roots in groups.items():
        cpu = user = system = 0.0
        rss = count = 0
        for pid in descendants(roots):
            if pid not in readings:
                readings[pid] = _read(pid)
            reading = readings[pid]
            if reading is not None:
                cpu += reading.cpu
                user += reading.user
                system += reading.system
                rss += reading.rss
                count += 1
        found[name] = Usage(cpu, user + system, user, system, rss, count)
    return found


def machine() -> tuple[float, float]:
    """All CPUs since boot, from ``/proc/stat``: (busy seconds, total seconds); idle and iowait are not busy."""
    fields = [int(value) for value in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(fields)
    return (total - fields[3] - fields[4]) / CLOCK_TICKS, total / CLOCK_TICKS


def processes(roots: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Each live process of the trees under ``roots``: (RSS bytes, open file descriptors) — the hub processes'
    memory one by one, and how many readers each holds (a reader is one socket)."""
    found = {}
    for pid in sorted(descendants(roots)):
        reading = _read(pid)
        try:
            files = len(os.listdir(PROC / str(pid) / "fd"))
        except OSError:
            continue
        if reading is not None:
            found[pid] = (reading.rss, files)
    return found
