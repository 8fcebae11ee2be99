# harden: the two set-up commands are `make demo` and `make test`; both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-installed-stamp
# The C ternary kernels (kernel=vnni), built into the environment where
# backend/custom_dispatch.py looks for them, with the zig toolchain from PyPI (ziglang).
KERNEL_OBJECT := $(VENV)/harden-kernels/ternary_vnni.o

.PHONY: demo test install clean bench bench-quick llama-cpp

# pip's build backend is chatty; its log is shown only when the install fails.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	$(BIN)/python -m pip install --quiet -e '.[test]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	touch $(STAMP)

# Freestanding x86-64 object for IREE's embedded ELF executables (no libc); it needs AVX-512
# F/BW/VL/VNNI/VBMI at run time, which the lowering checks before using it.
$(KERNEL_OBJECT): kernels/ternary_vnni.c $(STAMP)
	mkdir -p $(@D)
	$(BIN)/python -m ziglang cc -target x86_64-freestanding -ffreestanding -fno-builtin -O3 -g0 \
	    -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi -c $< -o $@

install: $(STAMP) $(KERNEL_OBJECT)

# The main job: the embedded stories260k model end to end. Import it, harden it with the
# named pipeline, then compile it with IREE and compare it with the PyTorch model.
demo: $(STAMP) $(KERNEL_OBJECT)
	mkdir -p out
	$(BIN)/harden-import --model stories260k --seq-len 64 --max-seq-len 256 -o out/stories260k.mlir
	$(BIN)/harden-opt --harden-pipeline="machine=tsp report=out/ternarize-report.json" out/stories260k.mlir \
	    --schedule-report out/schedule.json --schedule-gantt out/schedule.png -o out/stories260k.hardened.mlir
	$(BIN)/harden-run out/stories260k.hardened.mlir --samples 4 --json out/demo.json

test: $(STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m pytest -q test

# Benchmarks (bench/run.py): torch f32/bf16, IREE f32 and hardened ternary, llama.cpp TQ2_0, side by side.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	touch $(BENCH_STAMP)

# Full suite: stories260k, llama-100m, tinyllama-1.1b; builds llama.cpp into out/llama.cpp first if missing.
# BENCH_FLAGS adds options of bench/run.py (e.g. --reuse, --iree-flag=...).
bench: $(BENCH_STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m bench.run $(BENCH_FLAGS)

# Under 3 minutes: llama-100m, 3 rounds (llama.cpp only if already built).
bench-quick: $(BENCH_STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m bench.run --quick $(BENCH_FLAGS)

# llama.cpp's llama-bench from the llama-cpp-python sdist (about 10 minutes on 2 cores), in out/llama.cpp.
llama-cpp: $(BENCH_STAMP)
	$(BIN)/python -m bench.llama_cpp build

clean:
	rm -rf out .pytest_cache
