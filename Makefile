# The two commands a newcomer needs:  make demo  and  make test.
# Both create (or reuse) the virtual environment in .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv sysdeps sample bench docs clean

venv: $(STAMP)

# The pinned TensorFlow 2.15 / dm-reverb 0.14 wheels exist for Python 3.11 only: refuse any other
# version before installing anything, and never reuse a .venv that is not a working 3.11 one.
NEED_PY := 3.11
CHECK_PY := import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(NEED_PY)".split("."))))

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c '$(CHECK_PY)' 2>/dev/null || { echo "error: DROPJ-RLDS needs Python $(NEED_PY) (TensorFlow 2.15 and dm-reverb 0.14 have wheels for it only); '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing). Run: make PYTHON=python$(NEED_PY) $(MAKECMDGOALS)" >&2; exit 1; }
	@if [ -e $(VENV) ] && ! $(PY) -c '$(CHECK_PY)' 2>/dev/null; then echo "$(VENV) is not a working Python $(NEED_PY) environment: recreating it"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# torch first and by exact pin, so the packages after it keep its build (CPU or CUDA: pip's index decides; docs/install.md).
	$(PY) -m pip install -q torch==$$(sed -n 's/^torch==//p' constraints.txt)
	# setuptools' note on every editable install (a notice, not a problem: the package folders map into `dropj`)
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

# The main job: build every config from the embedded sample, load, summarise.
demo: $(STAMP)
	$(VENV)/bin/dropj demo --data_dir demo_data

# ruff first: the linter of the inner loop (its rules: pyproject.toml), a second at most.
test: $(STAMP) sysdeps
	$(VENV)/bin/ruff check --quiet .
	$(PY) -m pytest -n 2 -q

# The inner loop: everything but the tests marked slow (under a minute on 2 cores).
test-fast: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(PY) -m pytest -n 2 -q -m "not slow"

# Debian's xvfb and xdotool: the recorder's window is tested with real key events on a virtual display;
# chromium and chromium-driver: `dropj annotate` is tested in a real headless browser.
SYSDEPS := xvfb xdotool chromium chromium-driver
sysdeps:
	@if command -v Xvfb >/dev/null && command -v xdotool >/dev/null && command -v chromium >/dev/null \
	    && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS) >/dev/null; } \
	    || echo "note: apt-get could not install $(SYSDEPS); the window and browser tests will be skipped"; \
	else echo "note: install Debian's $(SYSDEPS) to run the window and browser tests (skipped without them)"; fi

# Regenerate the embedded sample data (deterministic).
sample: $(STAMP)
	PYTHONPATH=tests $(PY) -m factory.sample

bench: $(STAMP) sysdeps
	$(PY) tests/benchmarks/bench_build.py --write-docs
	$(PY) tests/benchmarks/bench_loader.py --write-docs
	$(PY) tests/benchmarks/bench_record.py --write-docs
	$(PY) tests/benchmarks/bench_annotate.py --write-docs
	$(PY) tests/benchmarks/bench_record_web.py --write-docs
	$(PY) tests/benchmarks/bench_stats.py --write-docs

docs: $(STAMP)
	$(VENV)/bin/dropj schema-doc > docs/schema.md

clean:
	rm -rf $(VENV) build *.egg-info
