# faceforge: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test lint bench clean-venv chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first (the CPU wheel by default; TORCH_SPEC=... for a GPU build), then the package
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/faceforge demo --output runs/demo

# tests/deploy: the /docs page is opened in a headless Chromium. Installed from Debian's packages
# when missing and when root; otherwise that one test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    echo "chromium: apt-get install failed; the /docs browser test will skip"; \
	  else echo "chromium: not installed and not root (no apt-get); the /docs browser test will skip"; fi; }

test: $(VENV)/.installed-dev chromium
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

clean-venv:
	rm -rf $(VENV)
