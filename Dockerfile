# The flowline image: every pipeline step, both ServingRuntimes and the Katib trials run in it.
# Build with `make image` (see the README, "Running on a cluster"), or by hand from the repository root:
#   podman build -t ghcr.io/flowline-ml/flowline:0.1.0 .
# BASE is any Debian-like image with Python 3.11 whose `python` and `pip` are on PATH. The tests build
# one from Debian packages with mmdebstrap (`make base-image`), so no registry is needed.
ARG BASE=python:3.11-slim

# The runtime requirements of setup.cfg, alone in a file: the dependency layer below is rebuilt only
# when they change, not when another part of setup.cfg does. Test extras stay out of the image.
FROM ${BASE} AS requirements
COPY setup.cfg /setup.cfg
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('/setup.cfg'); \
print(c['options']['install_requires'])" > /runtime.txt

FROM ${BASE}

# Pods run as uid 1000 under a read-only root filesystem with a writable /tmp: every cache a library
# writes must live there (numba, imported by alibi-detect, dies at import without a writable cache).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/cache

WORKDIR /opt/flowline

# libgomp1: XGBoost's and LightGBM's OpenMP runtime (a Debian-made base already has it).
RUN ldconfig -p | grep -q libgomp.so.1 || (apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*)

# Dependencies first, so a code change reuses this layer: the runtime requirements at the versions
# pinned in requirements/constraints.txt.
COPY requirements/constraints.txt requirements/constraints.txt
COPY --from=requirements /runtime.txt requirements/runtime.txt
RUN pip install -c requirements/constraints.txt -r requirements/runtime.txt

COPY setup.cfg pyproject.toml README.md ./
COPY flowline flowline
COPY components components
COPY pipelines pipelines
COPY inference_services inference_services
COPY katib_experiments katib_experiments
RUN pip install --no-deps . && flowline --version

# Non-root, matching the pods' securityContext (runAsUser 1000, runAsNonRoot, readOnlyRootFilesystem).
RUN useradd --uid 1000 --create-home flowline
USER 1000
# In the container the model server listens on every interface (locally it defaults to 127.0.0.1).
# No data home: pods read their data from object storage or a URL (README, "Data and credentials on a cluster").
ENV HOME=/home/flowline FLOWLINE_SERVE_HOST=0.0.0.0
WORKDIR /home/flowline
EXPOSE 8080
# The commit the image was built from (`make image` passes it, with "-dirty" when a tracked file differed):
# every package it builds names it in its lineage (flowline/code_version.py). Last, so that a new commit
# rebuilds no layer above.
ARG FLOWLINE_COMMIT=""
# `make image` writes the commit to .image/commit too: podman 4.3 reuses a cached ENV layer whatever its build
# argument says (an image rebuilt after a commit that changed only tests named the commit before), and a file
# that changes is a layer that must be rebuilt, and every layer after it.
COPY .image/commit /etc/flowline-commit
ENV FLOWLINE_COMMIT=${FLOWLINE_COMMIT}
# By default the image serves the package KServe's storage initializer puts in /mnt/models;
# pipeline tasks run their own commands in the same image.
CMD ["flowline", "serve", "/mnt/models"]
