# syntax=docker/dockerfile:1
# One image for every synesthesia service; the command picks the service, exactly as in the
# README: `synesthesia serve text|image|audio|search|ray`.
#   docker build -t synesthesia .                       # text, image, audio, search
#   docker build -t synesthesia-ray --build-arg EXTRAS=ray .   # + Ray Serve (`serve ray`)
# CPU-only PyTorch wheels: pass PIP_EXTRA_INDEX_URL (a CPU wheel index) as a build arg.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: install the package and its pinned dependencies into a venv -------------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY shared ./shared
COPY services ./services
RUN /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install "/src${EXTRAS:+[${EXTRAS}]}" \
 && /opt/venv/bin/python -c "import synesthesia.services.encoder.app, synesthesia.services.search.app"

# ---- runtime: the venv only, a non-root user -------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 synesthesia \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin synesthesia \
 && mkdir -p /data && chown synesthesia:synesthesia /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    SYNESTHESIA_HOST=0.0.0.0 \
    SYNESTHESIA_DATA_DIR=/data/index
USER 10001:10001
WORKDIR /home/synesthesia
VOLUME ["/data"]
EXPOSE 50051 50052 50053 50054 9000
ENTRYPOINT ["synesthesia"]
CMD ["serve", "text"]
