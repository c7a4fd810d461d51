# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out
NATIVE := cnn_base/_build/libcnn_base_pool2d.so

.PHONY: demo test venv notebooks benchmark fuzz sanitize clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The C++ pooling kernel; without a compiler the pools use MXNet operators instead.
$(NATIVE): cnn_base/csrc/pool2d.cc $(wildcard cnn_base/csrc/*.h) $(STAMP)
	$(BIN)/python scripts/build_native.py --optional

venv: $(STAMP) $(NATIVE)

demo: $(STAMP) $(NATIVE)
	$(BIN)/python scripts/reproduce_blog.py
	$(BIN)/python scripts/learn_edge_kernel.py --block both --plot $(OUT)/edge_kernel.png --json $(OUT)/edge_kernel.json
	$(BIN)/python scripts/draw_figures.py --out $(OUT)
	@echo "The pictures are in $(OUT)/ (the learning run: $(OUT)/edge_kernel.png, its numbers: $(OUT)/edge_kernel.json):"
	@ls -1 $(OUT)/*.png

test: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest

benchmark: $(STAMP) $(NATIVE)
	$(BIN)/python scripts/benchmark.py --json $(OUT)/benchmark.json

# The long differential fuzz of the pools (tests/fuzz_pool.py; make test runs a slice).
FUZZ_CASES ?= 5000
FUZZ_SEED  ?= 1
fuzz: $(STAMP) $(NATIVE)
	$(BIN)/python tests/fuzz_pool.py --seed $(FUZZ_SEED) --cases $(FUZZ_CASES)

# The kernel built with AddressSanitizer + UndefinedBehaviorSanitizer (any finding
# aborts), and a fuzz slice run on it. Python is not built with ASan, so the ASan
# runtime is preloaded; leak checking is off (Python's own allocations would fill it).
CXX        ?= g++
SAN_LIB    := cnn_base/_build/sanitize/libcnn_base_pool2d.so
SAN_CASES  ?= 300
sanitize: $(STAMP)
	mkdir -p $(dir $(SAN_LIB))
	MX=$$($(BIN)/python -c 'import mxnet, os; print(os.path.dirname(mxnet.__file__))') && \
	$(CXX) -shared -fPIC -std=c++17 -O1 -g -fno-omit-frame-pointer -fopenmp \
	    -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -I $$MX/include cnn_base/csrc/pool2d.cc $$MX/src/lib_api.cc -o $(SAN_LIB)
	LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	CNN_BASE_NATIVE=0 $(BIN)/python tests/fuzz_pool.py --library $(SAN_LIB) \
	    --seed $(FUZZ_SEED) --cases $(SAN_CASES)

notebooks: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,notebooks]'
	@echo "open them with: $(BIN)/jupyter lab notebooks/"

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info cnn_base/_build
