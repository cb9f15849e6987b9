# dlstack: `make help` lists the targets. `make layers` and `make test` set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= quick
# FORCE=1: rerun deliverables already run ok at this commit, preset, seed and config (skipped otherwise).
FORCE ?=
RUN_ARGS = --preset $(PRESET) $(if $(filter 1 true yes,$(FORCE)),--force)
# Where pip finds PyTorch. Empty: the default index (a CUDA build on Linux x86_64).
# No GPU?  make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu   (CPU-only build, ~200 MB)
TORCH_INDEX ?=
PIP_INDEX_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
# The real datasets: use the shared copy beside the checkout when there is one (else the cache/download).
ifneq ($(wildcard ../shared/data),)
export DLSTACK_DATA ?= $(abspath ../shared/data)
endif
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
LAYER_DIRS := $(sort $(wildcard layer[0-9]_*))
LAYER_TARGETS := $(foreach d,$(LAYER_DIRS),$(firstword $(subst _, ,$(d))))
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup layers $(LAYER_TARGETS) test test-fast bench lint clean serve proto iac-check \
	runs reproduce regress report docs notebooks notes reflect papers test-mine progress doctor

help: ## show this help
	@echo "dlstack: a deep-learning curriculum that runs. Targets:"
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo "  layerN       run layer N's deliverables (PRESET=quick|full, FORCE=1); built: $(LAYER_TARGETS)"
	@echo "Variables: PRESET=$(PRESET) FORCE=$(FORCE) TORCH_INDEX=$(TORCH_INDEX) DLSTACK_DATA=$(DLSTACK_DATA)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_INDEX_ARGS) -c constraints.txt -e '.[dev]'
	@touch $@

setup: $(STAMP) ## create .venv and install dlstack (re-runs when pyproject/constraints change)

layers: $(STAMP) ## run every built layer in order (PRESET=quick, FORCE=1 reruns up-to-date ones); one table
	$(BIN)/python -m layer0_math.lab layers $(RUN_ARGS)

$(LAYER_TARGETS): layer%: $(STAMP)
	$(BIN)/python -m $(filter layer$*_%,$(LAYER_DIRS)) $(RUN_ARGS)

test: $(STAMP) lint ## all tests but gpu (xdist), ruff and the import contract
	$(BIN)/python -m pytest -n auto --dist worksteal -m "not gpu" --durations=15

test-fast: $(STAMP) ## tests not marked slow
	$(BIN)/python -m pytest -n auto -m "not gpu and not slow"

bench: $(STAMP) ## speed benchmarks: ours vs the reference, ratios, each recorded as a run (runs/benchmarks/)
	$(BIN)/python -m layer8_meta bench

# --- layer 8: the research workspace over every run in runs/ ---
runs: $(STAMP) ## list recorded runs (ARGS="--layer 4 --status failed --since 7d")
	$(BIN)/python -m layer8_meta runs $(ARGS)

reproduce: $(STAMP) ## re-run one run from its manifest (its commit, config, seed) and compare: RUN=<id>
	@test -n "$(RUN)" || { echo "usage: make reproduce RUN=<run id or unique prefix>  (ids: make runs)"; exit 2; }
	$(BIN)/python -m layer8_meta reproduce $(RUN)

regress: $(STAMP) ## latest run of every deliverable and benchmark vs baselines/regress.json (UPDATE=1 rewrites it)
	$(BIN)/python -m layer8_meta regress $(if $(filter 1 true yes,$(UPDATE)),--update)

report: $(STAMP) ## the HTML + Markdown report of the latest run of every deliverable (runs/report/)
	$(BIN)/python -m layer8_meta report

docs: $(STAMP) ## the docs site (mkdocs-material, --strict, links checked) into site/
	$(BIN)/python -m layer8_meta docs

notebooks: $(STAMP) ## pair the notebooks (jupytext .py -> .ipynb) and execute them (runs/notebooks/)
	$(BIN)/python -m layer8_meta notebooks sync
	$(BIN)/python -m layer8_meta notebooks run

notes: $(STAMP) ## draw the notes graph (PNG + interactive HTML in runs/notes/) and list orphans, dangling links
	$(BIN)/python -m layer8_meta notes graph

reflect: $(STAMP) ## write this week's reflection entry journal/YYYY-Www.md from the registry (your notes kept)
	$(BIN)/python -m layer8_meta reflect --week

papers: $(STAMP) ## the reading queue of papers.yaml; `python -m layer8_meta papers check|mark` for the rest
	$(BIN)/python -m layer8_meta papers queue

test-mine: $(STAMP) ## run a layer's tests against your own module: IMPL=my_value.py TARGET=layer1_autograd.value [TESTS=...]
	@test -n "$(IMPL)" -a -n "$(TARGET)" || { echo "usage: make test-mine IMPL=path/to/my_value.py TARGET=layer1_autograd.value"; exit 2; }
	$(BIN)/python -m layer8_meta test-mine --impl $(IMPL) --target $(TARGET) $(if $(TESTS),--tests $(TESTS))

progress: $(STAMP) ## your mastery scorecard per layer, and whether you are ready for the next one
	$(BIN)/python -m layer8_meta progress

doctor: ## check the environment (Python, torch build, CUDA, data, disk) and say what to fix
	@test -x $(BIN)/python || { echo "FAIL  no .venv: run make setup"; exit 1; }
	$(BIN)/python -m layer8_meta doctor

serve: $(STAMP) ## start layer 6's service on http://127.0.0.1:8000 (models from runs/registry, filled by make layer6)
	$(BIN)/python -m layer6_serving serve

proto: $(STAMP) ## regenerate layer 6's gRPC stubs from layer6_serving/grpc/serving.proto
	@# -I . makes the import path layer6_serving/grpc/serving.proto, so the stubs import each other as a package
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. layer6_serving/grpc/serving.proto

# checkov pins dozens of packages of its own: it lives in a venv of its own, never in .venv
TOOLS ?= .venv-tools
CHECKOV_VERSION ?= 3.3.30
iac-check: $(STAMP) ## static checks of deploy/: checkov (Bicep + Dockerfile, own venv) and hadolint
	@test -x $(TOOLS)/bin/checkov || { $(PYTHON) -m venv $(TOOLS) && $(TOOLS)/bin/pip install --quiet checkov==$(CHECKOV_VERSION); }
	$(TOOLS)/bin/checkov -d deploy --framework bicep dockerfile --compact --quiet --skip-download
	$(BIN)/hadolint deploy/Dockerfile

lint: $(STAMP) ## ruff and the layer import contract (import-linter)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean: ## remove runs, caches and build leftovers (keeps .venv and the data cache)
	rm -rf runs site outputs multirun wandb .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
