# Everything a fresh machine needs, from the project's own files.
#   make test   - create .venv, install requirements, run the test suite
#   make demo   - the main job (see README)
#   make baseline - the tiny CE baseline on generated data
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install system-deps test test-fast lint demo baseline clean

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -r requirements.txt -r requirements-test.txt
	$(VPY) -m pip install --no-build-isolation --no-deps -e .
	touch $@

install: $(STAMP)

# Real images for the CPU demo (Debian's Fashion-MNIST package). Skipped
# when already present or when apt is unavailable (the demo then falls back
# to torchvision's download).
system-deps:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

test: install system-deps
	$(VPY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(VPY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VPY) -m ruff check vlltr_mm tools tests configs

baseline: install
	$(VPY) tools/data/make_tiny_lt.py data/tiny_lt
	$(VPY) tools/train.py configs/examples/baseline_ce_tiny-lt.py \
	    --work-dir work_dirs/baseline_ce_tiny-lt
	$(VPY) tools/test.py configs/examples/baseline_ce_tiny-lt.py \
	    work_dirs/baseline_ce_tiny-lt/epoch_12.pth \
	    --work-dir work_dirs/baseline_ce_tiny-lt

# The main job (README): Fashion-MNIST-LT, CVLP -> AnSS -> LGR and the
# baselines, table + JSON + plot in work_dirs/demo.
demo: install system-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VPY) tools/demo/run_demo.py

clean:
	rm -rf work_dirs
