# spamcam's two commands: `make demo` (the main job, end to end, on embedded data) and `make test`.
# Each sets itself up on a fresh machine: a virtual environment in .venv with the project installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/demo
STAMP := $(VENV)/.spamcam-installed

.PHONY: demo test setup benchmarks table1 clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,cpu,video,mqtt,web,triton,dev]'
	@# The MQTT tests run a real broker, Debian's mosquitto; installed here where apt and root allow it
	@# (the tests skip, saying why, where it is missing).
	-@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto >/dev/null 2>&1 || \
		echo "note: mosquitto is not installed (apt-get install mosquitto); the MQTT tests will skip"; }
	@# The web page is tested in a real headless browser, Debian's chromium; likewise.
	-@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		echo "note: chromium is not installed (apt-get install chromium); the web page test will skip"; }
	@# A real Triton server for the triton:// tests: the tritonserver binary from NVIDIA's nvidia-pytriton
	@# wheel, unpacked into $(VENV)/tritonserver (tests/triton_server.py says why and how).
	-@$(PY) tests/triton_server.py --prepare >/dev/null 2>&1 || \
		echo "note: no Triton server could be prepared (python tests/triton_server.py --prepare); the Triton server tests will skip"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) demo.py --out $(RUN)

test: $(STAMP)
	$(PY) -m pytest -q

benchmarks: $(STAMP)
	$(PY) benchmarks/preprocess.py
	$(PY) benchmarks/postprocess.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/edge_app.py

table1: $(STAMP)
	$(PY) benchmarks/table1.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
