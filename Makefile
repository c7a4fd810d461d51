# Two commands for a fresh clone: `make demo` and `make test`; `make help` lists every target.
# Another Python: `make demo PYTHON=python3.12` (3.10 to 3.12); the .venv follows it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the test extra (pytest, nbclient, playwright, ...), added to the venv by the targets that run tests
TEST_STAMP := $(VENV)/.installed-test
OUT    ?= out
# The C++ kernels are compiled into a per-user cache (cnn_base/native/__init__.py says where);
# this stamp only spares make a Python start when nothing changed.
NATIVE := $(VENV)/.native-built
SUPPORTED := 3.10 3.11 3.12

# The interpreter asked for, as "3.12.1 /path/to/python3.12"; empty when it does not run.
WANT := $(shell $(PYTHON) -c 'import sys; print(sys.version.split()[0], sys.executable)' 2>/dev/null)
WANT_MINOR := $(basename $(firstword $(WANT)))

.PHONY: help demo test venv notebooks benchmark lenet fuzz sanitize docs zoo clean FORCE
# `make` alone lists the targets; it installs nothing.
.DEFAULT_GOAL := help

# Every target, one line each (the "## " comment after its name).
help: ## list every target with one line each (this list)
	@echo "cnn_base: make <target> [PYTHON=python3.11] [VENV=.venv]"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' | \
	  awk -F'\t' '{ printf "  %-10s %s\n", $$1, $$2 }'

# Checked before anything is installed (make clean needs no Python): one line, then make stops.
ifeq ($(filter $(WANT_MINOR),$(SUPPORTED)),)
ifneq ($(filter-out clean help,$(or $(MAKECMDGOALS),help)),)
$(error cnn_base needs Python 3.10, 3.11 or 3.12 (3.13: no numpy<2 wheel, see README); PYTHON=$(PYTHON) is $(if $(WANT),Python $(firstword $(WANT)),not a Python that runs): pick one, e.g. make demo PYTHON=python3.11)
endif
endif

# A .venv made by another Python than the one asked for is rebuilt, not reused: the stamp holds
# the interpreter's version and path, and a different one forces this rule.
ifneq ($(WANT),$(shell cat $(STAMP) 2>/dev/null))
$(STAMP): FORCE
endif
$(STAMP): setup.cfg pyproject.toml
	@if [ -e $(VENV) ] && [ "$$(cat $(STAMP) 2>/dev/null)" != "$(WANT)" ]; then \
	  echo "$(VENV) was not made by $(PYTHON) ($(firstword $(WANT))) or its install did not finish: making it anew"; \
	  rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	echo "$(WANT)" > $(STAMP)

# The test extra on top, once per venv (a venv made anew loses this stamp with it).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

# The C++ kernels (pooling, convolution); without a compiler the blocks use MXNet operators instead.
$(NATIVE): $(wildcard cnn_base/csrc/*) cnn_base/native/__init__.py $(STAMP)
	$(BIN)/cnn-base build-native --optional
	touch $(NATIVE)

venv: $(STAMP) $(NATIVE) ## make .venv with the package (not its test extra) and build the C++ kernels

demo: $(STAMP) $(NATIVE) ## print the blog's examples, learn the edge kernel, draw the figures and animations into out/
	$(BIN)/cnn-base reproduce-blog
	$(BIN)/cnn-base learn-edge-kernel --block both --plot $(OUT)/edge_kernel.png --json $(OUT)/edge_kernel.json
	$(BIN)/cnn-base draw-figures --out $(OUT) --animate
	@echo "The pictures are in $(OUT)/ (the learning run: $(OUT)/edge_kernel.png, its numbers: $(OUT)/edge_kernel.json):"
	@ls -1 $(OUT)/*.png $(OUT)/*.gif

test: $(TEST_STAMP) $(NATIVE) ## install the test extra, run every test (the notebooks too)
	$(BIN)/python -m pytest

benchmark: $(STAMP) $(NATIVE) ## time our blocks against Gluon's built-ins into out/benchmark.json
	$(BIN)/cnn-base benchmark --json $(OUT)/benchmark.json

# d2l-zh v1 §5.5: LeNet on Fashion-MNIST, 5 epochs, batch 256, lr 0.9, our blocks then Gluon's
lenet: $(STAMP) $(NATIVE) ## train LeNet on Fashion-MNIST (d2l's setting), ours then Gluon's, into out/
	$(BIN)/cnn-base train-lenet --block both --epochs 5 --batch-size 256 --lr 0.9 \
		--json $(OUT)/lenet.json --plot $(OUT)/lenet.png

# Every model zoo vision network built with cnn_base.substitute() against Gluon's
# (tests/test_substitute.py; make test runs one network of each family).
zoo: $(TEST_STAMP) $(NATIVE) ## every model zoo network built with substitute() against Gluon's
	$(BIN)/python -m pytest -q -m zoo tests/test_substitute.py

# The long differential fuzz of the pools and of the conv kernel (tests/fuzz_pool.py,
# tests/fuzz_conv.py; make test runs a slice of each).
FUZZ_CASES ?= 5000
FUZZ_SEED  ?= 1
fuzz: $(TEST_STAMP) $(NATIVE) ## the long differential fuzz of the pools, the conv and the batch norm kernels
	$(BIN)/python tests/fuzz_pool.py --seed $(FUZZ_SEED) --cases $(FUZZ_CASES)
	$(BIN)/python tests/fuzz_conv.py --seed $(FUZZ_SEED) --cases $(FUZZ_CASES)
	$(BIN)/python tests/fuzz_batch_norm.py --seed $(FUZZ_SEED) --cases $(FUZZ_CASES)

# The kernel built with AddressSanitizer + UndefinedBehaviorSanitizer (any finding
# aborts), and a fuzz slice run on it. Python is not built with ASan, so the ASan
# runtime is preloaded; leak checking is off (Python's own allocations would fill it).
CXX        ?= g++
SAN_LIB    := cnn_base/_build/sanitize/libcnn_base_pool2d.so
SAN_CASES  ?= 300
sanitize: $(TEST_STAMP) ## the kernels built with ASan + UBSan, a fuzz slice run on them
	mkdir -p $(dir $(SAN_LIB))
	MX=$$($(BIN)/python -c 'import mxnet, os; print(os.path.dirname(mxnet.__file__))') && \
	$(CXX) -shared -fPIC -std=c++17 -O1 -g -fno-omit-frame-pointer -fopenmp \
	    -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -I $$MX/include $(wildcard cnn_base/csrc/*.cc) $$MX/src/lib_api.cc -o $(SAN_LIB)
	LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	CNN_BASE_NATIVE=0 $(BIN)/python tests/fuzz_pool.py --library $(SAN_LIB) \
	    --seed $(FUZZ_SEED) --cases $(SAN_CASES)
	LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	CNN_BASE_NATIVE=0 CNN_BASE_ONEDNN=0 $(BIN)/python tests/fuzz_conv.py --library $(SAN_LIB) \
	    --seed $(FUZZ_SEED) --cases $(SAN_CASES)
	LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	CNN_BASE_NATIVE=0 $(BIN)/python tests/fuzz_batch_norm.py --library $(SAN_LIB) \
	    --seed $(FUZZ_SEED) --cases $(SAN_CASES)

notebooks: $(STAMP) ## add JupyterLab to .venv and say how to open the notebooks
	$(BIN)/python -m pip install -q -e '.[notebooks]'
	@echo "open them with: $(BIN)/jupyter lab notebooks/"

# The documentation site into docs/_build/html (open index.html there): the notebooks executed,
# an API page per public name from the docstrings, the animations drawn by cnn_base, the
# interactive page copied; any Sphinx warning fails the build (-W), after all are reported.
docs: $(STAMP) $(NATIVE) ## build the documentation site into docs/_build/html (warnings are errors)
	$(BIN)/python -m pip install -q -e '.[docs]'
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "The site is in docs/_build/html/ (open docs/_build/html/index.html)"

FORCE:

clean: ## remove .venv, out/ and every build product
	rm -rf $(VENV) $(OUT) build dist *.egg-info cnn_base/_build
