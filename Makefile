# flowline: `make demo` runs the churn use case end to end; `make test` passes the tests.
# Both work on a fresh machine with only python3: they build .venv with the pinned set.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
# Datasets live beside the checkout (../shared/data), never in it; see DESIGN.md, "Data".
SHARED_DATA := $(abspath ../shared/data)
export FLOWLINE_DATA_HOME ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(HOME)/.cache/flowline/data)
PYTEST_WORKERS ?= 2

MLSERVER_VENV := build/mlserver-venv
FLAML_VENV := build/flaml-venv
AUTOGLUON_VENV := build/autogluon-venv
BTYD_VENV := build/btyd-venv
# promtool and the server from Debian's prometheus package, unpacked rather than installed so no service starts.
PROMTOOL := build/tools/usr/bin/promtool
PROMETHEUS := build/tools/usr/bin/prometheus
# Ceph (monitor, OSD, RADOS Gateway) from Debian's packages, unpacked: the tests' real S3 server.
CEPH := build/tools/ceph
# redis-server from Debian's packages (with the two libraries it links), unpacked so no service starts: the
# online feature store's server in the tests and the online bench.
REDIS := build/tools/redis
REDIS_SERVER := $(REDIS)/usr/bin/redis-server

# The flowline image, built with podman on a base made from Debian packages (no registry needed).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' flowline/__init__.py)
IMAGE ?= ghcr.io/flowline-ml/flowline:$(VERSION)
# Bump the tag when the base's recipe changes: an existing base is reused, not rebuilt.
BASE_IMAGE ?= localhost/flowline-base:bookworm-py311-1
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# On these machines HTTPS goes through a proxy with its own CA: the build's pip step sees the host's bundle.
BUILD_CA ?= /etc/ssl/certs/ca-certificates.crt
CONTAINERS_CONF_FILE := build/containers/containers.conf
# Where a compiled churn pipeline reads its data on the cluster (`flowline upload` puts the file there).
SOURCE ?= s3://flowline-data/telco/telco_customer_churn.csv
PODMAN := CONTAINERS_CONF=$(abspath $(CONTAINERS_CONF_FILE)) podman

.PHONY: install install-test tools container-tools demo test bench bench-models compile katib image base-image clean help

help:
	@echo "make demo     install, run churn locally, serve its package, send it a v2 and a v1 explain request"
	@echo "make test     install with test extras and run the whole test suite"
	@echo "make bench    churn, fraud and fraud-claims against FLAML on the same split (build/bench/automl-*.json),"
	@echo "              clv on seeds 0-4 against BG/NBD + Gamma-Gamma (build/bench/clv.json), and serving against MLServer and"
	@echo "              an HTTP floor (build/bench/serving.json), batch scoring of 1,000,000 rows against the"
	@echo "              in-process floor (build/bench/batch.json), entity features from Redis against the same"
	@echo "              requests without (build/bench/online.json), and each step's seconds of churn on Telco resampled"
	@echo "              x1, x10 and x50 (build/bench/scale.json and .md); about an hour, the three scale runs 16 minutes of it"
	@echo "make bench-models  flowline's default search against FLAML and AutoGluon-Tabular at equal wall time on every"
	@echo "              shipped classification dataset and the six public sets, seeds 0-4 (build/bench/models.json"
	@echo "              and .md); hours: each (dataset, seed) is kept as it finishes, and a rerun resumes"
	@echo "make compile  write the churn pipeline as KFP IR YAML to build/churn.yaml, reading SOURCE=s3://... on the cluster"
	@echo "make katib    regenerate the Katib Experiment YAMLs in katib_experiments/ from the search spaces"
	@echo "make image    build the flowline image with podman, tagged $(IMAGE) (IMAGE=... to change it)"
	@echo "make clean    remove .venv, build/ and runs/"

$(VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(PROMTOOL):
	mkdir -p build/tools/deb
	cd build/tools/deb && (apt-get download prometheus || (apt-get update -qq && apt-get download prometheus))
	dpkg -x build/tools/deb/prometheus_*.deb build/tools
	$(PROMTOOL) --version

$(REDIS_SERVER):
	mkdir -p $(REDIS)/deb
	cd $(REDIS)/deb && (apt-get download redis-server redis-tools libjemalloc2 liblzf1 || \
	  (apt-get update -qq && apt-get download redis-server redis-tools libjemalloc2 liblzf1))
	for deb in $(REDIS)/deb/*.deb; do dpkg -x $$deb $(REDIS); done
	LD_LIBRARY_PATH=$(REDIS)/usr/lib/x86_64-linux-gnu $(REDIS_SERVER) --version

$(CEPH)/usr/bin/radosgw:
	bash tests/tools/fetch-ceph.sh $(CEPH)

# Tools the tests run: kubectl (with kustomize) for the manifests, promtool for the alert rules, Prometheus
# for the canary controller's queries, headless Chromium (Debian's chromium) to render the HTML reports,
# Ceph's gateway as an S3 server, redis-server as the online feature store.
tools: $(PROMTOOL) $(CEPH)/usr/bin/radosgw $(REDIS_SERVER) container-tools
	command -v kubectl >/dev/null 2>&1 || (apt-get update -qq && (apt-get install -y -qq kubectl || apt-get install -y -qq kubernetes-client))
	kubectl version --client
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)
	chromium --version

install-test: $(VENV)/.installed-test

# podman builds and runs the image, runc is its runtime here, mmdebstrap makes the base (Debian packages).
container-tools:
	command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 \
	  || (apt-get update -qq && apt-get install -y -qq --no-install-recommends podman runc mmdebstrap uidmap)
	podman --version

# crun (podman's default) fails here on setrlimit and on the hybrid cgroup layout: use runc, and
# ulimits no higher than this shell's hard limit (nproc above 32768 fails).
$(CONTAINERS_CONF_FILE):
	mkdir -p $(dir $@)
	n=$$(ulimit -Hn); if [ "$$n" = unlimited ] || [ "$$n" -gt 1048576 ]; then n=1048576; fi; \
	printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' \
	  $$n $$n > $@

# Debian bookworm minbase with Python 3.11 and a venv on PATH, so the Dockerfile's pip and python work as on
# python:3.11-slim. Built once per BASE_IMAGE tag (about a minute), then reused.
base-image: $(CONTAINERS_CONF_FILE)
	$(PODMAN) image exists $(BASE_IMAGE) || ( mkdir -p build/containers && \
	  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,libgomp1,ca-certificates \
	    --customize-hook='chroot "$$1" python3 -m venv /opt/venv' bookworm build/containers/base.tar \
	    "deb $(DEBIAN_MIRROR) bookworm main" "deb $(DEBIAN_MIRROR) bookworm-updates main" \
	    "deb $(DEBIAN_MIRROR)-security bookworm-security main" </dev/null && \
	  $(PODMAN) import --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	    --change 'ENV VIRTUAL_ENV=/opt/venv' build/containers/base.tar $(BASE_IMAGE) && \
	  rm build/containers/base.tar )

# The dependency layer is cached by podman: a code-only rebuild takes seconds.
# The image names the commit it was built from, which every package it builds records (flowline/code_version.py).
COMMIT = $(shell git rev-parse HEAD 2>/dev/null)$(shell (git status --porcelain --untracked-files=no; git status --porcelain --untracked-files=all -- '*.py') 2>/dev/null | grep -q . && echo -dirty)
image: base-image
	mkdir -p .image && printf '%s\n' '$(COMMIT)' > .image/commit
	$(PODMAN) build --build-arg BASE=$(BASE_IMAGE) --build-arg FLOWLINE_COMMIT=$(COMMIT) \
	  $(if $(wildcard $(BUILD_CA)),-v $(BUILD_CA):/etc/ssl/certs/ca-certificates.crt:ro) -t $(IMAGE) .
	$(PODMAN) image inspect $(IMAGE) --format 'built $(IMAGE): {{.Size}} bytes'

demo: install
	$(BIN)/flowline run churn --summary runs/demo-summary.json
	$(BIN)/python -m flowline.pipelines.demo runs/demo-summary.json

# One thread per worker: two workers' OpenMP and BLAS pools spinning on two cores slow both to a crawl.
test: install-test tools
	OMP_NUM_THREADS=1 FLOWLINE_PROMTOOL=$(abspath $(PROMTOOL)) FLOWLINE_PROMETHEUS=$(abspath $(PROMETHEUS)) \
	  FLOWLINE_CEPH=$(abspath $(CEPH)) FLOWLINE_REDIS_SERVER=$(abspath $(REDIS_SERVER)) \
	  $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

# Not a test: measures, writes JSON, compares with the peers in the same run.
# wrk comes from Debian; MLServer and FLAML get their own venvs (MLServer needs uvloop 0.21.0;
# FLAML's extras want numpy 2, which the verified set cannot take; lifetimes, the BG/NBD baseline, too).
$(FLAML_VENV)/.installed:
	$(PYTHON) -m venv $(FLAML_VENV)
	$(FLAML_VENV)/bin/pip install --quiet --disable-pip-version-check 'flaml[automl]==2.8.0'
	touch $@

# AutoGluon-Tabular with its gradient-boosting extras; without torch (no neural networks), as in the issue's runs.
$(AUTOGLUON_VENV)/.installed:
	$(PYTHON) -m venv $(AUTOGLUON_VENV)
	$(AUTOGLUON_VENV)/bin/pip install --quiet --disable-pip-version-check \
	  'autogluon.tabular[lightgbm,xgboost,catboost]==1.6.3'
	touch $@

bench: install $(REDIS_SERVER) $(FLAML_VENV)/.installed
	command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	test -x $(MLSERVER_VENV)/bin/mlserver || ( $(PYTHON) -m venv $(MLSERVER_VENV) \
	  && $(MLSERVER_VENV)/bin/pip install --quiet --disable-pip-version-check mlserver==1.7.1 uvloop==0.21.0 \
	       xgboost-cpu==3.0.5 scikit-learn==1.9.1 \
	  && $(MLSERVER_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps mlserver-xgboost==1.7.1 )
	test -x $(BTYD_VENV)/bin/python || ( $(PYTHON) -m venv $(BTYD_VENV) \
	  && $(BTYD_VENV)/bin/pip install --quiet --disable-pip-version-check lifetimes==0.11.3 numpy==2.4.6 \
	       pandas==3.1.1 scipy==1.17.1 autograd==1.9.1 dill==0.4.1 python-dateutil==4.0.0 )
	for use_case in churn fraud fraud-claims; do \
	  $(BIN)/python tests/benchmark/automl_bench.py $$use_case --flaml-venv $(FLAML_VENV) --time-budget 300 \
	    --out build/bench/automl-$$use_case.json || exit 1; done
	$(BIN)/python tests/benchmark/clv_bench.py --btyd-venv $(BTYD_VENV) --seeds 0 1 2 3 4 --out build/bench/clv.json
	$(BIN)/flowline run churn --no-champion --summary build/bench/run-summary.json
	$(BIN)/python -c "import yaml; d = yaml.safe_load(open('pipelines/use_cases/churn.yaml')); \
	  d['tuning']['families'] = {'xgboost': d['tuning']['families']['xgboost']}; \
	  yaml.safe_dump(d, open('build/bench/churn-xgboost.yaml', 'w'))"
	$(BIN)/flowline run --use-case build/bench/churn-xgboost.yaml --no-champion --summary build/bench/xgboost-summary.json
	$(BIN)/python tests/benchmark/serving_bench.py build/bench/xgboost-summary.json \
	  --mlserver-venv $(MLSERVER_VENV) --out build/bench/serving.json
	$(BIN)/python tests/benchmark/batch_bench.py build/bench/run-summary.json --rows 1000000 \
	  --out build/bench/batch.json
	$(BIN)/python tests/benchmark/online_bench.py --redis-server $(REDIS_SERVER) --out build/bench/online.json
	$(BIN)/python tests/benchmark/scale_bench.py --factors 1 10 50 --out build/bench/scale.json

bench-models: install $(FLAML_VENV)/.installed $(AUTOGLUON_VENV)/.installed
	$(BIN)/python tests/benchmark/models_bench.py --flaml-venv $(FLAML_VENV) --autogluon-venv $(AUTOGLUON_VENV) \
	  --out build/bench/models.json

compile: install
	mkdir -p build
	$(BIN)/flowline compile churn -o build/churn.yaml --source $(SOURCE)

katib: install
	$(BIN)/flowline katib -o katib_experiments

clean:
	rm -rf $(VENV) build runs *.egg-info
