# syntax=docker/dockerfile:1
# initserve: build with `docker build -t initserve .`; a mirror can be used via the build args below.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN python -m venv /opt/initserve && /opt/initserve/bin/pip install .

FROM ${BASE_IMAGE}
ENV PATH=/opt/initserve/bin:$PATH PYTHONUNBUFFERED=1 INITSERVE_HOST=0.0.0.0 INITSERVE_PORT=8000
COPY --from=build /opt/initserve /opt/initserve
RUN useradd --system --uid 10001 --no-create-home initserve
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('INITSERVE_PORT', '8000')}/healthz\", timeout=2)"]
CMD ["initserve", "serve"]
