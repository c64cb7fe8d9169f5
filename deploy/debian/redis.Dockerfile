# Redis from Debian, for a host that reaches a Debian mirror but no container registry: docker-compose.yml's `redis`
# service runs on it with the same command as on the official image (scripts/check-image does that, on a base
# made with debootstrap). Debian's bookworm ships Redis 7.0.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o redis -g redis /data

# As the official image does: a redis-server started without a config file gets `--protected-mode no`, so that the
# other containers of its private network may connect (protected mode admits loopback clients only).
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = redis-server ]; then exec \"$@\" --protected-mode no; fi; exec \"$@\"", "redis-entrypoint"]

WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
