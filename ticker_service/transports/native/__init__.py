"""The reader transports below ASGI: uvicorn's protocol class answers readers' requests itself and writes
the hub's bytes straight to their sockets. Same file names as ``transports/asgi/`` for the same roles."""
