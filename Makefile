# spamcam's two commands: `make demo` (the main job, end to end, on embedded data) and `make test`.
# Each sets itself up on a fresh machine: a virtual environment in .venv with the project installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/demo
STAMP := $(VENV)/.spamcam-installed

.PHONY: demo test setup benchmarks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,cpu,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/train-cam --dataset embedded --epochs 4 --limit train=3000 --limit val=500 --out $(RUN) --no-progress
	$(VENV)/bin/eval-cam $(RUN)/ckpt.pt --dataset embedded --limit 1000 --json $(RUN)/eval.json --save-vis $(RUN)/vis

test: $(STAMP)
	$(PY) -m pytest -q

benchmarks: $(STAMP)
	$(PY) benchmarks/postprocess.py
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
