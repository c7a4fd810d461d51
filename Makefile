# Two commands for a fresh clone: `make demo` and `make test`.
# Another Python: `make demo PYTHON=python3.12` (3.10 to 3.13); the .venv follows it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out
# The C++ pooling kernel is compiled into a per-user cache (cnn_base/native.py says where);
# this stamp only spares make a Python start when nothing changed.
NATIVE := $(VENV)/.native-built
SUPPORTED := 3.10 3.11 3.12 3.13

# The interpreter asked for, as "3.12.1 /path/to/python3.12"; empty when it does not run.
WANT := $(shell $(PYTHON) -c 'import sys; print(sys.version.split()[0], sys.executable)' 2>/dev/null)
WANT_MINOR := $(basename $(firstword $(WANT)))

.PHONY: demo test venv notebooks benchmark lenet clean FORCE
.DEFAULT_GOAL := venv

# Checked before anything is installed (make clean needs no Python): one line, then make stops.
ifeq ($(filter $(WANT_MINOR),$(SUPPORTED)),)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),venv)),)
$(error cnn_base needs Python 3.10, 3.11, 3.12 or 3.13; PYTHON=$(PYTHON) is $(if $(WANT),Python $(firstword $(WANT)),not a Python that runs): pick one, e.g. make demo PYTHON=python3.11)
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
	$(BIN)/python -m pip install -q -e '.[test]'
	echo "$(WANT)" > $(STAMP)

# The C++ pooling kernel; without a compiler the pools use MXNet operators instead.
$(NATIVE): $(wildcard cnn_base/csrc/*) cnn_base/native.py $(STAMP)
	$(BIN)/cnn-base build-native --optional
	touch $(NATIVE)

venv: $(STAMP) $(NATIVE)

demo: $(STAMP) $(NATIVE)
	$(BIN)/cnn-base reproduce-blog
	$(BIN)/cnn-base learn-edge-kernel --block both --plot $(OUT)/edge_kernel.png --json $(OUT)/edge_kernel.json
	$(BIN)/cnn-base draw-figures --out $(OUT)
	@echo "The pictures are in $(OUT)/ (the learning run: $(OUT)/edge_kernel.png, its numbers: $(OUT)/edge_kernel.json):"
	@ls -1 $(OUT)/*.png

test: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest

benchmark: $(STAMP) $(NATIVE)
	$(BIN)/cnn-base benchmark --json $(OUT)/benchmark.json

# d2l-zh v1 §5.5: LeNet on Fashion-MNIST, 5 epochs, batch 256, lr 0.9, our blocks then Gluon's
lenet: $(STAMP) $(NATIVE)
	$(BIN)/cnn-base train-lenet --block both --epochs 5 --batch-size 256 --lr 0.9 \
		--json $(OUT)/lenet.json --plot $(OUT)/lenet.png

notebooks: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,notebooks]'
	@echo "open them with: $(BIN)/jupyter lab notebooks/"

FORCE:

clean:
	rm -rf $(VENV) $(OUT) build dist *.egg-info cnn_base/_build
