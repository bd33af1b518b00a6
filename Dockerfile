# sandbox-mcp: an MCP server that runs untrusted code in hardened, single-use sandboxes.
#
# Build:  docker build -t sandbox-mcp .
#         docker build --build-arg LANGUAGES="python javascript c" -t sandbox-mcp-small .
#         docker build --build-arg EXTRA_PACKAGES="python3-networkx libgmp-dev" -t sandbox-mcp-more .
# Run:    docker run --rm -i --read-only --tmpfs /tmp:exec,nosuid,nodev,size=1g \
#           --network none --cap-drop ALL --security-opt no-new-privileges \
#           --memory 1g --cpus 1 --pids-limit 512 sandbox-mcp
# (see SECURITY.md for both identity modes and what each flag buys).

ARG DEBIAN_IMAGE=debian:12-slim

# --- build: the server in its own virtual environment ------------------------------------
FROM ${DEBIAN_IMAGE} AS build
COPY scripts/install-runtimes /usr/local/sbin/install-runtimes
# The server's build needs no snippet packages: those go into the image below.
RUN SNIPPET_PACKAGES=off install-runtimes --image python && rm -rf /var/lib/apt/lists/*
# Exactly the audited versions: every file is checked against the lock's hashes (made by
# scripts/lock), the build backend included, so nothing unhashed is fetched to build the
# server either.
COPY requirements/runtime.txt /src/requirements/runtime.txt
RUN python3 -m venv /opt/sandbox-mcp \
    && /opt/sandbox-mcp/bin/pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes -r /src/requirements/runtime.txt
COPY pyproject.toml README.md /src/
COPY sandbox_mcp /src/sandbox_mcp
RUN /opt/sandbox-mcp/bin/pip install --no-cache-dir --disable-pip-version-check \
        --no-deps --no-build-isolation /src

# --- the image: runtimes for snippets, the server, nothing else ---------------------------
FROM ${DEBIAN_IMAGE}
# The languages to install: "all", or ids such as "python javascript c go".
ARG LANGUAGES=all
# Extra Debian packages for snippets (libraries, python3-* modules, ...).
ARG EXTRA_PACKAGES=""
COPY scripts/install-runtimes /usr/local/sbin/install-runtimes
# The Python packages snippets may import (numpy, pandas, matplotlib, ...): install-runtimes
# puts them, from this hashed lock, into /opt/sandbox-mcp-python when LANGUAGES has python.
COPY requirements/snippets.txt /usr/local/share/sandbox-mcp/snippets.txt
# hadolint ignore=DL3008
RUN SNIPPET_LOCK=/usr/local/share/sandbox-mcp/snippets.txt install-runtimes --image "${LANGUAGES}" \
    && if [ -n "${EXTRA_PACKAGES}" ]; then \
        apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${EXTRA_PACKAGES}; \
    fi \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
# The virtual environment lives outside anything a snippet's PATH reaches; the snippets'
# python3 is the system one, without the server's packages.
COPY --from=build /opt/sandbox-mcp /opt/sandbox-mcp

# Set by the release build to the repository's address.
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="sandbox-mcp" \
      org.opencontainers.image.description="MCP server that runs untrusted code in hardened, single-use sandboxes" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"

ENV SANDBOX_RUN_ROOT=/tmp/sandbox-mcp
# The default: shared mode, as nobody. For pool mode (a uid per run) run it as root with
# only SETUID and SETGID: --user 0:0 --cap-drop ALL --cap-add SETUID --cap-add SETGID.
USER 65534:65534
WORKDIR /tmp
# tini is PID 1: it reaps what the server's children orphan and forwards signals.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/sandbox-mcp/bin/sandbox-mcp"]
