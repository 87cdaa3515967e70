# rdbench front door. `make help` lists the targets.
#
# On a GPU box with Docker and the NVIDIA Container Toolkit:
#   make reproduce                      # build the image if stale, run the paper grid in it, write Table 1
#   make ui                             # look at the runs: http://127.0.0.1:5000
# Any variable below can be overridden: make reproduce GRID=conf/quick.yaml GPUS=device=0
# `make -n reproduce` prints the docker commands it would run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RDBENCH := $(abspath $(BIN))/rdbench
# `rdbench container`, run as a module so that it loads neither torch nor MLflow:
# a missing engine is reported within a second. (Through env, which leaves the
# interpreter's path to the kernel: GNU make's own check refuses one that lies behind
# a folder the caller may only search, as for the Docker test's non-root caller.)
CONTAINER := env $(abspath $(BIN))/python -m rdbench.commands.container

# The grid and where its results go (absolute paths: the container mounts them).
GRID ?= conf/paper.yaml
DEVICE ?= auto
EXPERIMENT ?= rdbench
TRACKING_DIR ?= $(CURDIR)/outputs/tracking
DATA_DIR ?= $(CURDIR)/data
OUT_DIR ?= $(CURDIR)/outputs/report
TRACKING_URI = sqlite:///$(abspath $(TRACKING_DIR))/mlflow.db
UI_PORT ?= 5000

# The image. Empty values keep docker/Dockerfile's defaults (an exact nvidia/cuda base,
# torch and torchvision as requirements/pinned.txt pins them) and the engine's networks.
IMAGE ?= rdbench:latest
GPUS ?= all
BUILD ?= auto
BASE_IMAGE ?=
TORCH ?=
BUILD_ARGS ?=
BUILD_NETWORK ?=
# Folders outside TRACKING_DIR where experiments of the store keep artifacts (mounted only if named here).
ARTIFACT_DIRS ?=
NETWORK ?=
# Folders outside TRACKING_DIR where experiments of the store keep artifacts (mounted only if named here).
ARTIFACT_DIRS ?=

# A grid file is passed by absolute path (the local targets work in TRACKING_DIR);
# a grid name (paper, quick) is looked up in conf/.
GRID_ARG = $(if $(wildcard $(GRID)),$(abspath $(GRID)),$(GRID))
# Under `make -n`, the docker targets still run (the + prefix), with --dry-run: they
# print the docker build / docker run lines instead of contacting the engine.
DRY_RUN = $(if $(findstring n,$(firstword -$(MAKEFLAGS))),--dry-run)
BUILD_OPTS = --image '$(IMAGE)' $(if $(BASE_IMAGE),--base-image '$(BASE_IMAGE)') \
	$(if $(TORCH),--torch '$(TORCH)') $(foreach arg,$(BUILD_ARGS),--build-arg '$(arg)') \
	$(if $(BUILD_NETWORK),--build-network '$(BUILD_NETWORK)')
RUN_OPTS = --gpus '$(GPUS)' --tracking-dir '$(TRACKING_DIR)' --data-dir '$(DATA_DIR)' \
	--experiment '$(EXPERIMENT)' $(if $(NETWORK),--network '$(NETWORK)') \
	$(foreach dir,$(ARTIFACT_DIRS),--artifact-dir '$(dir)')
LOCAL_ENV = MLFLOW_TRACKING_URI=$(TRACKING_URI) MLFLOW_EXPERIMENT_NAME=$(EXPERIMENT) RDBENCH_DATA_DIR=$(abspath $(DATA_DIR))

.PHONY: help install test test-fast lint image reproduce reproduce-local reproduce-mlflow quick table ui

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'
	@echo "Variables (make VAR=value TARGET): GRID=$(GRID) GPUS=$(GPUS) IMAGE=$(IMAGE) DEVICE=$(DEVICE)"
	@echo "  TRACKING_DIR=$(TRACKING_DIR) DATA_DIR=$(DATA_DIR) OUT_DIR=$(OUT_DIR) EXPERIMENT=$(EXPERIMENT)"
	@echo "  BUILD=auto|always|never BASE_IMAGE= TORCH= BUILD_ARGS= BUILD_NETWORK= NETWORK= UI_PORT=$(UI_PORT)"

install: ## Create .venv with the pinned stack and rdbench in editable mode
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements/dev-pinned.txt
	$(BIN)/pip install --no-deps -e .

test: ## Run the whole test suite (what CI runs; the Docker test needs an engine: see .ci/run)
	$(BIN)/pytest -q

test-fast: ## The fast suite: skip slow, Docker and services (PostgreSQL, MLflow server, Ray) tests
	$(BIN)/pytest -q -m "not slow and not docker and not services"

lint: ## ruff and hadolint
	$(BIN)/ruff check rdbench tests scripts
	$(BIN)/hadolint docker/Dockerfile

image: ## Build IMAGE from docker/Dockerfile (Docker; BASE_IMAGE, TORCH, BUILD_ARGS, BUILD_NETWORK)
	+$(CONTAINER) build $(BUILD_OPTS) $(DRY_RUN)

reproduce: ## Docker + GPUS: build IMAGE if stale, run GRID in it, regenerate Table 1 into OUT_DIR
	+$(CONTAINER) reproduce --grid '$(GRID)' --device '$(DEVICE)' --out-dir '$(OUT_DIR)' \
		--build '$(BUILD)' $(BUILD_OPTS) $(RUN_OPTS) $(DRY_RUN)

reproduce-local: ## The same grid without Docker, into the same store (TRACKING_DIR)
	mkdir -p '$(TRACKING_DIR)' '$(DATA_DIR)'
	cd '$(TRACKING_DIR)' && $(LOCAL_ENV) $(RDBENCH) grid '$(GRID_ARG)' --device '$(DEVICE)' --out '$(abspath $(OUT_DIR))'

reproduce-mlflow: ## The grid through `mlflow run docker/` (docker_env project on rdbench:latest; `make image` first)
	mkdir -p '$(TRACKING_DIR)' '$(DATA_DIR)'
	cd '$(TRACKING_DIR)' && MLFLOW_TRACKING_URI=$(TRACKING_URI) $(abspath $(BIN))/mlflow run '$(CURDIR)/docker' -e grid \
		-P grid=$(basename $(notdir $(GRID))) -P device=$(DEVICE) --experiment-name '$(EXPERIMENT)' \
		$(if $(GPUS),-A gpus=$(GPUS)) -A user=$$(id -u):$$(id -g) -A volume=$(abspath $(TRACKING_DIR)):$(abspath $(TRACKING_DIR)) \
		-A v=$(abspath $(DATA_DIR)):/data $(if $(NETWORK),-A network=$(NETWORK))

quick: ## The quick grid (laptop CPU, minutes) without Docker
	$(MAKE) reproduce-local GRID=conf/quick.yaml

table: ## Regenerate Table 1 from the store in TRACKING_DIR into OUT_DIR
	cd '$(TRACKING_DIR)' && $(LOCAL_ENV) $(RDBENCH) table --out '$(abspath $(OUT_DIR))'

ui: ## MLflow UI on the store in TRACKING_DIR, on 127.0.0.1:UI_PORT
	cd '$(TRACKING_DIR)' && $(abspath $(BIN))/mlflow ui --backend-store-uri $(TRACKING_URI) --host 127.0.0.1 --port $(UI_PORT)
