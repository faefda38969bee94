# Image Gateway: slim, non-root, and the same `image-gateway serve` entry point the tests run.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# Run alone, the image keeps everything in GATEWAY_DATA_DIR: with GATEWAY_DATABASE_URL unset the
# database is the SQLite file /data/gateway.db (app/settings.py), migrated on start; image files
# go to /data/blobs. Mount a volume there to keep them (`-v igw-data:/data`). In production,
# set GATEWAY_DATABASE_URL to PostgreSQL (docker/compose.yaml).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_DATA_DIR=/data
# The data directory must exist and belong to the user the gateway runs as; a new named volume
# mounted on it copies this ownership.
RUN useradd --create-home --uid 10001 gateway && mkdir -p /data && chown gateway /data
# The wheel carries app/ (with the /docs assets) and migrations/ side by side (see pyproject.toml),
# so migrate works here.
COPY --from=build /install /usr/local
USER gateway
WORKDIR /data
EXPOSE 8000
# For `serve` on port 8000. A `worker` container has no HTTP: it uses `image-gateway worker --check`
# (docker/compose.yaml).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["image-gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
