# One image for every Glasscast service; the command picks the service:
#   glasscast run gateway | processors | registry | ingest | media-worker | analytics

# The web app's pinned npm packages (hls.js, uPlot), which the gateway serves under /static/vendor/.
FROM node:20-slim AS web
WORKDIR /web
COPY gateways/web/package.json gateways/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY topics topics
COPY views views
COPY processors processors
COPY media media
COPY gateways gateways
COPY infra infra
COPY --from=web /web/node_modules gateways/web/node_modules
# Editable: the gateway serves its pages, scripts and vendor files from the tree beside its code.
RUN pip install --no-cache-dir -e .

ENV GLASSCAST_DATA_DIR=/var/lib/glasscast \
    GLASSCAST_LOG_FORMAT=json
VOLUME /var/lib/glasscast
ENTRYPOINT ["glasscast"]
CMD ["run", "gateway"]
