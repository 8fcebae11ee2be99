# harden: the two set-up commands are `make demo` and `make test`; both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean

# pip's build backend is chatty; its log is shown only when the install fails.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	$(BIN)/python -m pip install --quiet -e '.[test]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	touch $(STAMP)

install: $(STAMP)

# The main job: the embedded stories260k model end to end. Import it, harden it with the
# named pipeline, then compile it with IREE and compare it with the PyTorch model.
demo: $(STAMP)
	mkdir -p out
	$(BIN)/harden-import --model stories260k --seq-len 64 --max-seq-len 256 -o out/stories260k.mlir
	$(BIN)/harden-opt --harden-pipeline="machine=tsp report=out/ternarize-report.json" out/stories260k.mlir \
	    --schedule-report out/schedule.json --schedule-gantt out/schedule.png -o out/stories260k.hardened.mlir
	$(BIN)/harden-run out/stories260k.hardened.mlir --samples 4 --json out/demo.json

test: $(STAMP)
	$(BIN)/python -m pytest -q test

clean:
	rm -rf out .pytest_cache
