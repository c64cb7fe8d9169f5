# nginx from Debian, for a host that reaches a Debian mirror but no container registry: docker-compose.yml's
# `proxy` service runs on it with deploy/nginx.conf mounted as on the official image (scripts/check-image does that,
# on a base made with debootstrap). Debian's bookworm ships nginx 1.22.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log

EXPOSE 80
# SIGQUIT: nginx finishes the requests it is serving, then exits (SIGTERM would drop them at once).
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
