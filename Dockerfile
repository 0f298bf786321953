# zoom-proxy as a container.
#
#   docker build -t zoom-proxy .
#   docker run --rm -p 8080:8080 -e ZOOM_CLIENT_ID -e ZOOM_CLIENT_SECRET -e PROXY_SESSION_KEY \
#       -e PROXY_PUBLIC_URL=https://zoom-proxy.example.com zoom-proxy
#
# Mount your own config over /etc/zoom-proxy/config.yaml for anything the environment
# variables do not cover. Arguments go to `python -m proxy`:
# `docker run --rm zoom-proxy gen-key`, `docker run --rm -e ... zoom-proxy check-config`.
# deploy/ has a docker-compose example, Kubernetes manifests and a guide.

# A patch-level tag, so a rebuild gets the same Python; bump it deliberately, and for a
# new minor version regenerate requirements.lock for it (.ci/run says how).
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

# --- builder: a virtualenv with the package and its runtime dependencies only ---------
# No test extras. Every dependency ships binary wheels for this Python, so no compiler
# is needed here either; the source tree and pip's build files stay in this stage.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# The runtime dependencies at the versions in requirements.lock (made for this Python;
# .ci/run says how to regenerate it), each file checked against its hash. A layer of
# its own, so a change to the code alone does not download them again.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY proxy ./proxy
# The package itself and nothing more; pip check fails the build if the lock no longer
# satisfies pyproject.toml's bounds.
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip check

# --- runtime: the same Python, the venv, the default config, an unprivileged user -----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="zoom-proxy" \
      org.opencontainers.image.description="An authenticating reverse proxy for Zoom's REST API"
# The bytecode was compiled at install time, so a read-only root filesystem works.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ZOOM_PROXY_CONFIG=/etc/zoom-proxy/config.yaml
RUN groupadd --system --gid 10001 zoom-proxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin zoom-proxy
COPY --from=builder /opt/venv /opt/venv
# Reads ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET, PROXY_SESSION_KEY and PROXY_PUBLIC_URL.
COPY config.yaml /etc/zoom-proxy/config.yaml
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
# The slim image has no curl; urllib exits non-zero on a refused connection or a non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
# On SIGTERM the proxy keeps serving with /readyz 503, drains for at most
# listen.shutdown_timeout seconds, then exits 0: give it longer than that to stop.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "proxy"]
