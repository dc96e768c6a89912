# The two commands a newcomer needs:  make demo  and  make test.
# Both create (or reuse) the virtual environment in .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv sysdeps sample bench docs clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# torch first and by exact pin: that takes the local CPU wheel, not CUDA.
	$(PY) -m pip install -q torch==$$(sed -n 's/^torch==//p' constraints.txt)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

# The main job: build every config from the embedded sample, load, summarise.
demo: $(STAMP)
	$(VENV)/bin/dropj demo

test: $(STAMP) sysdeps
	$(PY) -m pytest -n 2 -q

# Debian's xvfb and xdotool: the recorder's window is tested with real key events on a virtual display.
sysdeps:
	@if command -v Xvfb >/dev/null && command -v xdotool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xdotool >/dev/null; } \
	    || echo "note: apt-get could not install xvfb and xdotool; the recorder's window tests will be skipped"; \
	else echo "note: install Debian's xvfb and xdotool to run the recorder's window tests (skipped without them)"; fi

# Regenerate the embedded sample data (deterministic).
sample: $(STAMP)
	$(VENV)/bin/dropj make-sample

bench: $(STAMP) sysdeps
	$(PY) tests/benchmarks/bench_build.py --write-docs
	$(PY) tests/benchmarks/bench_loader.py --write-docs
	$(PY) tests/benchmarks/bench_record.py --write-docs

docs: $(STAMP)
	$(VENV)/bin/dropj schema-doc > docs/schema.md

clean:
	rm -rf $(VENV) build *.egg-info
