# ticker: one image for every role. The command picks it: `ticker hub`, `ticker worker` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package build needs (pyproject.toml names README.md as the readme).
COPY pyproject.toml README.md ./
COPY ticker_service ./ticker_service
COPY workers ./workers
COPY clients/python ./clients/python
# The browser client, served by the hub under /static/js/ (a checkout serves it from clients/js itself).
COPY clients/js ./ticker_service/static/js
ENV TICKER_PUSH_JS_DIR=/app/ticker_service/static/js
RUN pip install . \
    && useradd --system --create-home --home-dir /home/ticker --uid 10001 --user-group ticker

USER ticker
EXPOSE 8000
CMD ["ticker", "hub", "--host", "0.0.0.0", "--port", "8000"]
