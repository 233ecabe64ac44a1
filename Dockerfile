# One image for the three console scripts; pick the command in docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY edge_agent ./edge_agent
COPY cloud_service ./cloud_service
COPY firmware_sim ./firmware_sim
RUN pip install --no-cache-dir '.[edge,cloud,sim]'
USER nobody
