# harden: the two set-up commands are `make demo` and `make test`; both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the embedded stories260k model end to end.
demo: $(STAMP)
	mkdir -p out
	$(BIN)/harden-opt test/Inputs/qkv_gqa.mlir --harden-fuse-qkv --harden-ternarize -o out/demo.mlir
	cat out/demo.mlir

test: $(STAMP)
	$(BIN)/python -m pytest -q test

clean:
	rm -rf out .pytest_cache
