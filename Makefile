# Everything a fresh machine needs, from the project's own files.
#   make install - create .venv: `pip install -e .[demo]` + mmcv-lite + tests
#   make test   - install, then run the test suite
#   make demo   - the main job (see README); make demo-digits on Digits-LT
#   make baseline - the tiny CE baseline on generated data
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install system-deps test test-fast lint demo demo-digits baseline clean

# The package in editable mode with its demo extra (what `make demo` and
# the suite's demo tests need) plus mmcv-lite: MMPretrain needs an mmcv and
# does not install one; with a full mmcv already there, MMCV= skips it
# (`make install MMCV=`). Build tools first: the editable build runs in
# this venv (no build isolation: nothing is fetched for the build).
MMCV ?= -r requirements/mmcv.txt
$(STAMP): requirements.txt $(wildcard requirements/*.txt) \
		requirements-test.txt pyproject.toml setup.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install "setuptools>=77,<81" wheel $(MMCV) \
	    -r requirements-test.txt
	$(VPY) -m pip install --no-build-isolation -e ".[demo]"
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

# Two pytest workers, one thread each: most of the suite's time is tool
# processes starting up (single-threaded), which two workers overlap; one
# thread per worker keeps the 2 cores from being oversubscribed.
PYTEST_WORKERS ?= -n 2 --dist loadfile
test: install system-deps
	OMP_NUM_THREADS=1 $(VPY) -m pytest -q $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: install
	OMP_NUM_THREADS=1 $(VPY) -m pytest -q $(PYTEST_WORKERS) -m "not slow" \
	    $(PYTEST_ARGS)

lint: install
	$(VPY) -m ruff check vlltr_mm tools tests configs

baseline: install
	$(VPY) tools/data/make_tiny_lt.py data/tiny_lt
	$(VPY) tools/train.py configs/examples/baseline_ce_tiny-lt.py \
	    --work-dir work_dirs/baseline_ce_tiny-lt --overwrite
	$(VPY) tools/test.py configs/examples/baseline_ce_tiny-lt.py \
	    work_dirs/baseline_ce_tiny-lt/epoch_12.pth \
	    --work-dir work_dirs/baseline_ce_tiny-lt

# The main job (README): Fashion-MNIST-LT, CVLP -> AnSS -> LGR and the
# baselines over seeds 0 1 2 (the README's table; SEEDS=0 for one seed),
# table + JSON + plot in work_dirs/demo. docs/demo.md: method and timings.
SEEDS ?= 0 1 2
demo: install system-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VPY) tools/demo/run_demo.py \
	    --seeds $(SEEDS)

# The same runner on Digits-LT (scikit-learn's handwritten digits).
demo-digits: install
	$(VPY) tools/data/make_digits_lt.py data/digits_lt
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VPY) tools/demo/run_demo.py \
	    --data-root data/digits_lt --text-dir configs/vlltr/demo_text_digits \
	    --name Digits-LT --work-dir work_dirs/demo_digits --seeds $(SEEDS)

clean:
	rm -rf work_dirs
