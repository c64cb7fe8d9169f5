"""The HTTP edge: every Starlette endpoint (flashes, devices, reader sessions, audit, admin, health, pages,
OpenAPI) and the request plumbing they share."""
