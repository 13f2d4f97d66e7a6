# medxfer: `make demo` runs the main job on embedded data, `make test` runs the suite.
# Both create .venv on first use (python3.11, pinned requirements, `pip install -e .`).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output
LABEL_STUDIES ?= label_studies
LABEL_PORT ?= 8000

.PHONY: demo test bench lint format clean-demo help label

help:
	@echo "make demo   - the demo grid on embedded data: stage 2, scratch vs ImageNet vs ImageNet->medical, FT vs LP-FT, leaderboard (CPU, 8-16 min on 2 cores)"
	@echo "make test   - run the test suite"
	@echo "make label  - MONAI Label server on generated studies of every bundle (http://127.0.0.1:8000; docs/monailabel.md)"
	@echo "make bench  - run the benchmarks under benchmarks/"
	@echo "make lint   - ruff check;  make format - ruff format"

$(STAMP): requirements.txt requirements-dev.txt requirements-label.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m common.label.compat
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m common demo --output-dir $(DEMO_DIR)

# Studies are generated once: a second `make label` keeps the labels saved through the server since.
label: $(STAMP)
	test -d $(LABEL_STUDIES) || $(PY) -m common.label studies --output $(LABEL_STUDIES)
	$(PY) -m common.label serve --studies $(LABEL_STUDIES) --port $(LABEL_PORT)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check common tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format common tests benchmarks

clean-demo:
	rm -rf $(DEMO_DIR)
