# outcomes: the two commands a newcomer needs are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    := build/demo
export OUTCOMES_DB ?= $(abspath $(DEMO)/outcomes.duckdb)

.PHONY: help venv sysdeps demo test test-fast lint lab bench docs clean

help:
	@echo "make demo    - install into .venv, make a synthetic export, ingest it, render the latest quarter"
	@echo "make test    - ruff + the whole pytest suite (installs Chromium and R from Debian if missing)"
	@echo "make lab     - open the notebooks in JupyterLab"
	@echo "make bench   - run the benchmarks in benchmarks/"
	@echo "make docs    - API reference from the docstrings into build/docs/ (offline)"

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (outcomes)" >/dev/null
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests use: headless Chromium (report browser test), R with lme4 and
# survival (reference implementations), glibc locale sources (a test runs under de_DE). Installed only when missing; needs root (CI runs as root).
sysdeps:
	@need=""; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium fonts-liberation"; \
	command -v Rscript >/dev/null 2>&1 || need="$$need r-base-core"; \
	Rscript -e 'library(lme4)' >/dev/null 2>&1 || need="$$need r-cran-lme4"; \
	Rscript -e 'library(survival)' >/dev/null 2>&1 || need="$$need r-cran-survival"; \
	[ -e /usr/share/i18n/locales/de_DE ] || need="$$need locales"; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null \
	    || { echo "error: could not install$$need (run as root, or install them yourself)"; exit 1; }; \
	fi

demo: $(STAMP)
	@mkdir -p $(DEMO)
	$(BIN)/outcomes synth --out $(DEMO)/export.csv --seed 2026 --episodes 3000
	$(BIN)/outcomes ingest $(DEMO)/export.csv --db $(OUTCOMES_DB)
	$(BIN)/outcomes status --db $(OUTCOMES_DB)
	$(BIN)/outcomes report all --quarter latest --db $(OUTCOMES_DB) --out reports --jobs 2

test: $(STAMP) sysdeps
	$(BIN)/ruff check outcomes tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser and not r"

lint: $(STAMP)
	$(BIN)/ruff check outcomes tests benchmarks

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

docs: $(STAMP)
	rm -rf build/docs
	$(BIN)/pdoc --docformat numpy --no-search -o build/docs outcomes outcomes.ingest outcomes.privacy \
	  outcomes.store outcomes.episodes outcomes.models outcomes.tables outcomes.plots outcomes.reports \
	  outcomes.synthetic outcomes.schema outcomes.instruments outcomes.errors outcomes.cli
	@echo "API reference: build/docs/index.html"

clean:
	rm -rf build .pytest_cache .ruff_cache
