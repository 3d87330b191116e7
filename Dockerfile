# mjvault in a container: the vault is a volume, settings come from MJVAULT_* variables.
#
#   docker build -t mjvault .                      # or: podman build --format docker -t mjvault .
#   docker run --rm -v mjvault-vault:/vault mjvault init /vault
#   docker run -d -v mjvault-vault:/vault --env-file mjvault.env mjvault   # sync --watch
#
# BASE is any Debian-like image: python:3.11-slim by default (Python ready), or a bare Debian
# image, where the first step of each stage installs Debian's python3. Both stages use the
# same BASE, so the virtual environment built in the first finds the same interpreter in the
# second. (docs/design.md, "Containers")
ARG BASE=python:3.11-slim

# -- builder: the wheel, installed with its dependencies into a venv -------------------------
FROM ${BASE} AS builder
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv python3-pip ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Optional parts, comma-separated as pip writes them: --build-arg EXTRAS=s3,http2
ARG EXTRAS=""
WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in ./
COPY mjvault ./mjvault
RUN python3 -m venv /opt/mjvault \
    && /opt/mjvault/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && wheel="$(ls /wheels/mjvault-*.whl)" \
    && /opt/mjvault/bin/pip install "${wheel}${EXTRAS:+[$EXTRAS]}" \
    && /opt/mjvault/bin/mjvault --version

# -- runtime: the interpreter and the venv, nothing to build with -----------------------------
FROM ${BASE} AS runtime
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --uid 10001 --user-group --create-home --home-dir /home/mjvault \
        --shell /usr/sbin/nologin mjvault \
    && mkdir -p /vault \
    && chown 10001:10001 /vault
COPY --from=builder /opt/mjvault /opt/mjvault
# MJVAULT_VAULT: every command acts on the volume without --vault. The session token and any
# other setting come the same way at run time (MIDJOURNEY_SESSION_TOKEN, MJVAULT_SERVE_TOKEN,
# MJVAULT_SYNC_JOBS…: docs/configuration.md), from an env file or a secret, never the image.
# Caches that matplotlib and fontconfig would write under $HOME go to /tmp, so the root file
# system can be mounted read-only.
ENV PATH=/opt/mjvault/bin:$PATH \
    MJVAULT_VAULT=/vault \
    PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /home/mjvault
VOLUME /vault
# Healthy: the vault opens and its latest snapshot reads (a read, so it runs beside a sync
# that holds the write lock). `serve` has its own check in compose.yaml.
HEALTHCHECK --interval=5m --timeout=30s --start-period=30s --retries=3 \
    CMD ["mjvault", "--vault", "/vault", "log", "-n", "1"]
ENTRYPOINT ["mjvault"]
CMD ["sync", "--watch"]
