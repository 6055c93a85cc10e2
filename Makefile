# The two commands, each doing its own set-up first (only what is missing, so a second call starts at once):
#
#   make run    the default workflow (config/config.yaml) and its report, results/report.html
#   make test   the test command CI runs: the linters, `snakemake --lint` and the whole test suite
#
# Set-up: a virtualenv in .venv holding PyTorch (the CPU build unless TORCH_INDEX names another, e.g.
# https://download.pytorch.org/whl/cu126), the project with every extra, and NeuroX; and, as root on Debian/Ubuntu,
# the system packages (Apertium for offline back-translation; SLURM and munge for the cluster tests).
# The mirror: $ROBUSTLM_MIRROR, else ../shared/mirror when it exists; with one, the hub is switched off
# (HF_HUB_OFFLINE=1): an air-gapped site reads everything from it.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

BIN := $(VENV)/bin
RUN_PACKAGES := apertium apertium-eng-spa
TEST_PACKAGES := $(RUN_PACKAGES) slurm-wlm munge

ROBUSTLM_MIRROR ?= $(abspath $(wildcard ../shared/mirror))
ifneq ($(ROBUSTLM_MIRROR),)
export ROBUSTLM_MIRROR
export HF_HUB_OFFLINE ?= 1
endif

.PHONY: run test lint setup run-packages test-packages

run: setup run-packages
	$(BIN)/snakemake --profile profiles/local
	$(BIN)/snakemake --report results/report.html
	@echo "Tables and figures: results/tables, results/figures; the report: results/report.html"

test: setup test-packages lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/ruff format --check src tests workflow benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

setup: $(VENV)/.installed

# Reinstalled when the dependencies or this recipe change. NeuroX 1.0.9, its latest release, pins torch 1.8 and
# numpy 1.19, which cannot install beside this stack, and pip has no way to override a package's pins: it is
# installed without its dependencies, the ones the analysis uses being in the `lca` extra (envs/lca.post-deploy.sh).
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# A site that reaches PyPI (or its proxy) but not the PyTorch index takes torch from pip's own sources,
	@# instead of retrying an unreachable host for every dependency.
	if $(BIN)/python -c "import socket, sys, urllib.parse; socket.getaddrinfo(urllib.parse.urlsplit(sys.argv[1]).hostname, 443)" \
		"$(TORCH_INDEX)" 2>/dev/null; then \
		$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_INDEX); \
	else \
		echo "$(TORCH_INDEX) cannot be reached: torch $(TORCH_VERSION) from pip's configured index"; \
		$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"; \
	fi
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	$(BIN)/python -m pip install --quiet --no-deps neurox==1.0.9
	touch $@

run-packages:
	@$(MAKE) --no-print-directory system-packages PACKAGES="$(RUN_PACKAGES)" \
		WITHOUT="the default run's back-translation (Apertium) fails"

test-packages:
	@$(MAKE) --no-print-directory system-packages PACKAGES="$(TEST_PACKAGES)" \
		WITHOUT="the tests that need them skip"

# Installed when missing, if this is root on a machine with apt; otherwise one line says what the run goes without.
.PHONY: system-packages
system-packages:
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p > /dev/null 2>&1 || echo $$p; done | xargs); \
	if [ -z "$$missing" ]; then exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "installing $$missing"; \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
		 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing)) > /dev/null; \
	else \
		echo "not installed: $$missing (sudo apt-get install $$missing); without them $(WITHOUT)"; \
	fi
