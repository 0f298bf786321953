# zoom-proxy as a container.
#
#   docker build -t zoom-proxy .
#   docker run --rm -p 8080:8080 -e ZOOM_CLIENT_ID -e ZOOM_CLIENT_SECRET -e PROXY_SESSION_KEY \
#       -v "$PWD/config.yaml:/etc/zoom-proxy/config.yaml:ro" zoom-proxy
#
# Arguments go to `python -m proxy`: `docker run --rm zoom-proxy gen-key`,
# `docker run --rm -e ... zoom-proxy check-config`.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

# --- builder: a virtualenv with the package and its runtime dependencies only ---------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN /opt/venv/bin/pip install .

# --- runtime: the same Python, the venv, the default config, an unprivileged user -----
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ZOOM_PROXY_CONFIG=/etc/zoom-proxy/config.yaml
RUN groupadd --system --gid 10001 zoom-proxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin zoom-proxy
COPY --from=builder /opt/venv /opt/venv
# Mount your own file over this one to change public_url, cookies, CORS or access rules.
COPY config.yaml /etc/zoom-proxy/config.yaml
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
# The slim image has no curl; Python's urllib fails (non-zero exit) on anything but 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["python", "-m", "proxy"]
