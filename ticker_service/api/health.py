"""Liveness and readiness: ``/healthz`` answers while the process runs, ``/readyz`` while its broker is usable."""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    ready = await request.app.state.broker.ready()
    body = {"status": "ready" if ready else "not ready", "readers": request.app.state.hub.count, "pid": os.getpid()}
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
