# scenematch: API + offline embedding model, non-root, data on a volume.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SCENEMATCH_DATA_DIR=/data \
    SCENEMATCH_CACHE_DIR=/opt/scenematch-cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

RUN useradd --create-home --uid 10001 scenematch
WORKDIR /app

# A CPU-only torch wheel index can be given at build time (--build-arg PIP_EXTRA_INDEX_URL=...)
# to keep the image small; pip reads it from the environment.
ARG PIP_EXTRA_INDEX_URL=""
COPY pyproject.toml README.md ./
COPY service ./service
COPY indexer ./indexer
COPY models ./models
COPY data ./data
RUN pip install "torch==2.13.0" \
 && pip install -e . \
 && scenematch build-model \
 && mkdir -p /data && chown -R scenematch:scenematch /data /opt/scenematch-cache

USER scenematch
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["scenematch", "serve", "--host", "0.0.0.0", "--port", "8000"]
