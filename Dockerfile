# The flowline image: every pipeline component and the serving runtime run in it.
# Build from the repository root: docker build -t ghcr.io/flowline-ml/flowline:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/flowline

# libgomp1: XGBoost's OpenMP runtime. Dependencies first, so code changes reuse this layer.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install -r requirements/constraints.txt

COPY setup.cfg pyproject.toml README.md ./
COPY flowline flowline
COPY components components
COPY pipelines pipelines
COPY inference_services inference_services
COPY katib_experiments katib_experiments
RUN pip install --no-deps . && flowline --version

# Non-root, matching the pods' securityContext (runAsNonRoot, readOnlyRootFilesystem).
RUN useradd --uid 1000 --create-home flowline
USER 1000
# In the container the model server listens on every interface (locally it defaults to 127.0.0.1).
ENV HOME=/home/flowline FLOWLINE_DATA_HOME=/data FLOWLINE_SERVE_HOST=0.0.0.0
WORKDIR /home/flowline
EXPOSE 8080
# By default the image serves the package KServe's storage initializer puts in /mnt/models;
# pipeline tasks run their own commands in the same image.
CMD ["python", "-m", "flowline.inference_services", "/mnt/models"]
