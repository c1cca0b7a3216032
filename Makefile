# The two commands of the README's quick start: `make demo` and `make test`.
# torch is pinned here (a local CPU wheel on our machines installs in seconds); the
# package itself keeps an open range for users.
PYTHON ?= python3
VENV ?= .venv
TORCH_PIN ?= torch==2.13.0
RUFF_PIN ?= ruff==0.17.6
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR ?= .memadvise/demo

.PHONY: venv demo test test-heavy test-fast lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e ".[test]" "$(RUFF_PIN)"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m memadvise profile sample_models/gpt.py --out $(DEMO_DIR)/profile.json
	$(PY) -m memadvise show --profile $(DEMO_DIR)/profile.json
	$(PY) -m memadvise suggest --profile $(DEMO_DIR)/profile.json --out $(DEMO_DIR)/plan.json
	$(PY) -m memadvise apply --plan $(DEMO_DIR)/plan.json --rank 1 --patch $(DEMO_DIR)/plan.patch --verify --verify-repeats 3 --verify-out $(DEMO_DIR)/verify.json
	$(PY) -m memadvise report --profile $(DEMO_DIR)/profile.json --plan $(DEMO_DIR)/plan.json --rank 1 --verify $(DEMO_DIR)/verify.json --out $(DEMO_DIR)/report.html

# everything but the heavy runs (benchmark smokes, torch.compile on CPU); CI runs both lanes
test: venv
	$(PY) -m pytest -q tests -m "not heavy"

test-heavy: venv
	$(PY) -m pytest -q tests -m heavy

# unit tests only: no training script in a subprocess, no browser, no benchmark (under 90 s)
test-fast: venv
	$(PY) -m pytest -q tests/unit -m "not slow"

lint: venv
	$(VENV)/bin/ruff check memadvise tests benchmarks sample_models

bench: venv
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/report_scale.py
	$(PY) benchmarks/traffic.py
	$(PY) benchmarks/probe_checks.py
	$(PY) benchmarks/compare.py

clean:
	rm -rf $(VENV) .memadvise .pytest_cache
