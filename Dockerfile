# initserve image: `docker build -t initserve .`, then `docker run -p 8000:8000 initserve`.
# Mirrors: --build-arg BASE_IMAGE=<registry>/python:3.11-slim --build-arg PIP_INDEX_URL=<simple index>
# (also PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST). Any Debian-like base with python3 >= 3.11, its venv module and
# useradd works: the commands below say `python3`, never `python`, for that reason. No `# syntax=` line: BuildKit
# would fetch that frontend image from Docker Hub, which a mirror-only build cannot reach.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Build args reach RUN as environment variables, which pip reads; they are not kept in the final stage.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so that a change to the code reuses this layer.
COPY pyproject.toml ./
RUN python3 -m venv /opt/initserve \
    && python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
       > /tmp/requirements.txt \
    && /opt/initserve/bin/pip install --no-cache-dir -r /tmp/requirements.txt
COPY README.md ./
COPY service ./service
# Then the engine's numba kernels, compiled here once for each x86-64 level (AVX-512, AVX2+FMA, baseline: the same
# bits, different speeds) instead of in every new replica (tens of seconds). Compiled, not run, so the build
# machine's CPU does not matter. At start `initserve serve` copies the level the host runs into NUMBA_CACHE_DIR.
RUN /opt/initserve/bin/pip install --no-cache-dir --no-deps . \
    && /opt/initserve/bin/initserve kernels /opt/initserve/kernels

FROM ${BASE_IMAGE}
# NUMBA_CACHE_DIR: numba needs a cache directory it can write to, and only /tmp is writable by the service user:
# `initserve serve` copies the kernels compiled at build (INITSERVE_KERNEL_CACHE) there, so a new container loads
# them instead of compiling (a CPU no level fits compiles once per container, its workers sharing the result).
ENV PATH=/opt/initserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    INITSERVE_KERNEL_CACHE=/opt/initserve/kernels \
    INITSERVE_HOST=0.0.0.0 \
    INITSERVE_PORT=8000
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it. The process writes only under /tmp: with
# INITSERVE_WORKERS > 1, `initserve serve` makes a fresh PROMETHEUS_MULTIPROC_DIR there (mount a tmpfs or an
# emptyDir on /tmp when the root filesystem is read-only).
RUN groupadd --system --gid 10001 initserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin initserve
COPY --from=build /opt/initserve /opt/initserve
USER 10001:10001
EXPOSE 8000
# The slim image has no curl: probe with the interpreter that is there anyway. /readyz fails (503 or refused: urlopen
# raises, exit 1) until start-up completes and from the start of shutdown, so "healthy" means "send it traffic".
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('INITSERVE_PORT', '8000')}/readyz\", timeout=2)"]
# uvicorn drains in-flight responses on SIGTERM and then exits; exec form keeps it PID 1 so it gets the signal.
STOPSIGNAL SIGTERM
CMD ["initserve", "serve"]
