# One image for every Glasscast service; the command picks the service:
#   glasscast run gateway | processors | registry | ingest | media-worker
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY topics topics
COPY processors processors
COPY media media
COPY gateways gateways
COPY infra infra
RUN pip install --no-cache-dir .

ENV GLASSCAST_DATA_DIR=/var/lib/glasscast \
    GLASSCAST_LOG_FORMAT=json
VOLUME /var/lib/glasscast
ENTRYPOINT ["glasscast"]
CMD ["run", "gateway"]
