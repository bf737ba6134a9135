# uptime-daemon container image: multi-stage, slim, non-root; state in a volume.
#   docker build -t uptime-daemon .
#   docker run -p 8080:8080 -v uptime-state:/var/lib/uptime-daemon \
#     -e KURRENTDB_URL=kurrentdb://kurrentdb:2113?tls=false uptime-daemon

# --- build: a virtualenv with the project and its dependencies ---------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/uptime-daemon
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/uptime-daemon/bin/pip install .

# --- runtime -------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/uptime-daemon/bin:$PATH \
    UPTIME_CONFIG_DIR=/etc/uptime-daemon
RUN groupadd --system --gid 10001 uptime \
 && useradd --system --uid 10001 --gid uptime --home-dir /var/lib/uptime-daemon --shell /usr/sbin/nologin uptime \
 && mkdir -p /var/lib/uptime-daemon /etc/uptime-daemon \
 && chown uptime:uptime /var/lib/uptime-daemon
COPY --from=build /opt/uptime-daemon /opt/uptime-daemon
COPY config/ /etc/uptime-daemon/
COPY deploy/docker/container.toml /etc/uptime-daemon/container.toml
WORKDIR /var/lib/uptime-daemon
VOLUME ["/var/lib/uptime-daemon"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["uptime-daemon"]
CMD ["--config", "/etc/uptime-daemon/container.toml", "run"]
