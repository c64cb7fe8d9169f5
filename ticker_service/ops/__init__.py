"""Operations: Prometheus metrics (across hub processes), logs, the request observer, per-process reports for
the operations page, and the allocator trim."""
