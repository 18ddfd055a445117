# syntax=docker/dockerfile:1
#
# One image for every mediagen role; the role is the command:
#   docker run IMAGE serve | api | worker | gateway --grpc-target HOST:PORT | scheduler | migrate | emulator
# Multi-stage: the build stage makes a virtualenv at /opt/mediagen, the runtime stage copies it
# onto a clean base and runs as an unprivileged user (uid 10001), so Kubernetes can run it with
# runAsNonRoot and readOnlyRootFilesystem (only /tmp needs to be writable).
#
# Python 3.12, not 3.11: taskiq-redis's worker can hang on shutdown on 3.11
# (../shared/reference/taskiq.md, section 5.3).

ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/mediagen
ENV PATH=/opt/mediagen/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# Then the package itself (.dockerignore keeps tests, docs, deploy files and caches out).
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && mediagen --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mediagen" \
      org.opencontainers.image.description="Asynchronous media-generation service: one image, every role" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 mediagen \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/mediagen --create-home \
       --shell /usr/sbin/nologin mediagen \
    && install -d -o 10001 -g 10001 /data

COPY --from=build /opt/mediagen /opt/mediagen

# pip compiled every module at install, so nothing needs writing at run time:
# PYTHONDONTWRITEBYTECODE keeps Python from trying on a read-only root filesystem.
# MEDIAGEN_HOST=0.0.0.0: in a container the servers must listen beyond loopback.
# MEDIAGEN_DATA_DIR=/data: only the embedded `serve` keeps state there (SQLite, local media);
# mount a volume on it for that. The distributed roles keep their state in PostgreSQL and S3.
ENV PATH=/opt/mediagen/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MEDIAGEN_HOST=0.0.0.0 \
    MEDIAGEN_DATA_DIR=/data

WORKDIR /data
USER 10001:10001

# 50051 gRPC API, 50052 worker health (gRPC), 8080 JSON/HTTP gateway.
EXPOSE 50051 50052 8080

ENTRYPOINT ["mediagen"]
CMD ["--help"]
