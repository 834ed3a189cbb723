# riskwatch worker / workbench / simulator / bulletin image (docker-compose.yml builds it).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TZ=Asia/Shanghai
# the CJK font of `riskwatch bulletin` comes with the Python packages (paperang-p2-fonts-cjk)
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/riskwatch
COPY pyproject.toml README.md* ./
COPY riskwatch ./riskwatch
COPY streams ./streams
COPY detectors ./detectors
COPY schemas ./schemas
COPY sinks ./sinks
COPY notify ./notify
COPY dashboards ./dashboards
COPY reports ./reports
COPY web ./web
COPY edge ./edge
COPY deploy ./deploy
RUN pip install . && useradd --system --home-dir /var/lib/riskwatch --create-home riskwatch \
 && mkdir -p /var/lib/riskwatch/state && chown -R riskwatch /var/lib/riskwatch \
 && mkdir -p /etc/alertmanager && chown 65534:65534 /etc/alertmanager   # alertmanager-config writes here as Alertmanager's user

USER riskwatch
WORKDIR /var/lib/riskwatch
EXPOSE 6066 8080
CMD ["riskwatch", "worker"]
