"""Security policies: editor tokens, reader JWTs, origins, the connection guard, rate limits and the audit log."""
