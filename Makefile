# The README's two commands: `make demo` (main job on embedded data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test files run on this many pytest-xdist workers (the CI machine has 2 cores; `make test TEST_WORKERS=4`).
TEST_WORKERS ?= 2

.PHONY: demo test bench venv clean

venv: $(STAMP)

# Re-install only when requirements.txt changes.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

demo: $(STAMP)
	$(PY) -m litepose_jax.demo

# Speed and memory (medians of repeated runs; see each script's docstring). Takes about an hour here.
bench: $(STAMP)
	$(PY) bench/inference.py
	$(PY) bench/train_step.py
	$(PY) bench/decode.py
	$(PY) bench/input_pipeline.py
	$(PY) bench/evaluation.py
	$(PY) bench/export.py

clean:
	rm -rf $(VENV) .cache
