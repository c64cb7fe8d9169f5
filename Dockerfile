# ticker: one image for every role. The command picks it: `ticker hub`, `ticker worker` (see docker-compose.yml).
# The base is any Debian-like image with Python 3.11+ and its venv module: the official python image by default, or
# Debian's own Python (scripts/check-image builds on a debootstrap'd bookworm with `--build-arg BASE_IMAGE=...`).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# A virtual environment, not the system's site-packages: Debian's Python refuses `pip install` there (PEP 668),
# and the image's `python` and `ticker` are then the same whatever the base (compose's healthcheck runs `python`).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/ticker \
    PATH=/opt/ticker/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

WORKDIR /src
# The dependencies first, pinned by constraints.txt, in a layer of their own that only a change to pyproject.toml or
# constraints.txt rebuilds: installing the project with empty packages (and an empty readme) pulls them in, then
# the project itself goes (the real one follows below).
COPY pyproject.toml constraints.txt ./
RUN python3 -m venv "$VIRTUAL_ENV" \
    && mkdir -p ticker_service workers clients/python/ticker_client \
    && touch README.md ticker_service/__init__.py workers/__init__.py clients/python/ticker_client/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y ticker \
    && rm -rf README.md ticker_service workers clients build ./*.egg-info

# Only what the package build needs (pyproject.toml names README.md as the readme).
COPY README.md ./
COPY ticker_service ./ticker_service
COPY workers ./workers
COPY clients/python ./clients/python
# The browser client, served by the hub under /static/js/ (a checkout serves it from clients/js itself).
# The package carries it (package-data), so the installed hub and push bridge find it without settings.
COPY clients/js ./ticker_service/static/js
# The source goes once installed: `python` run from a directory holding ticker_service/ would import that copy.
RUN pip install --no-deps . \
    && cd / && rm -rf /src \
    && useradd --uid 10001 --user-group --create-home --home-dir /home/ticker --shell /usr/sbin/nologin ticker

USER ticker
WORKDIR /home/ticker
EXPOSE 8000
CMD ["ticker", "hub", "--host", "0.0.0.0", "--port", "8000"]
