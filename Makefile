# `make run` and `make test` create .venv on first use and reuse it afterwards.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Loopback only, no hub look-ups, no stale Ray auth tokens (see README "Environment").
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test test-slow test-browser lint bench clean

$(STAMP): pyproject.toml requirements/torch.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/pip install -r requirements/torch.txt
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/varsearch run --out outputs/run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The explorer pages in Debian's headless Chromium, driven by Playwright (no browser download).
# Installs chromium (apt, as root or with sudo) and Playwright on first use.
# VARSEARCH_SCREENSHOT_DIR=docs make test-browser refreshes the README's screenshots.
test-browser: $(STAMP)
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install -e '.[browser]'
	$(BIN)/python -m pytest -q -m browser

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
