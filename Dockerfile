# Image Gateway: slim, non-root, and the same `image-gateway serve` entry point the tests run.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_DATA_DIR=/data
RUN useradd --create-home --uid 10001 gateway && mkdir -p /data && chown gateway /data
# The wheel carries app/ and migrations/ side by side (see pyproject.toml), so migrate works here.
COPY --from=build /install /usr/local
USER gateway
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["image-gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
