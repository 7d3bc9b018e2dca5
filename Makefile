# The README's two commands: `make demo` (main job on embedded data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

# Re-install only when requirements.txt changes.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

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
