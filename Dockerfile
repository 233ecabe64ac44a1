# One image for the three console scripts; pick the command in docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY edge_agent ./edge_agent
COPY cloud_service ./cloud_service
COPY firmware_sim ./firmware_sim
RUN pip install --no-cache-dir '.[edge,cloud,sim]'

# A user of our own, not "nobody" (whose HOME is /nonexistent): the code stays root-owned and
# read-only; what the services write lives in folders this user owns.
#   /var/lib/flightdeck    data: the cloud's SQLite metadata, the edge agent's spool
#                          (docker-compose.yml mounts a volume here; a new named volume
#                          takes this folder's owner)
#   /var/cache/flightdeck  numba's compiled-kernel cache (cache=True): without a writable
#                          NUMBA_CACHE_DIR, importing the kernels fails ("no locator available")
ARG FLIGHTDECK_UID=10001
RUN groupadd --system --gid "$FLIGHTDECK_UID" flightdeck \
    && useradd --system --uid "$FLIGHTDECK_UID" --gid flightdeck --no-create-home \
        --home-dir /var/lib/flightdeck --shell /usr/sbin/nologin flightdeck \
    && install -d -o flightdeck -g flightdeck -m 0750 \
        /var/lib/flightdeck /var/cache/flightdeck /var/cache/flightdeck/numba
ENV HOME=/var/lib/flightdeck \
    NUMBA_CACHE_DIR=/var/cache/flightdeck/numba
USER flightdeck
