"""The portable reader transports, as Starlette endpoints: any ASGI server runs them."""
