# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of PyTorch first: a plain `torch` requirement would pull CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# `make demo`: a fresh demo home (.medloop/demo), served on http://127.0.0.1:8000 (Ctrl+C
# stops it). MedMNIST files come from MEDLOOP_DATA_DIR, else ../shared/data/medmnist when
# present, else the verified download. More options: make demo DEMO_ARGS="--port 8001".
DEMO_DATA := $(or $(MEDLOOP_DATA_DIR),$(if $(wildcard ../shared/data/medmnist/pneumoniamnist.npz),../shared/data/medmnist))
DEMO_ARGS ?=

demo: $(STAMP)
	$(if $(DEMO_DATA),MEDLOOP_DATA_DIR=$(DEMO_DATA)) $(BIN)/medloop demo $(DEMO_ARGS)

# Debian's chromium for tests/browser: installed when missing and we are root (CI);
# elsewhere the browser tests skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "could not install chromium: the browser tests will skip"; \
	fi

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .medloop .pytest_cache .mypy_cache .ruff_cache
