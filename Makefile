# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out
NATIVE := cnn_base/_build/libcnn_base_pool2d.so

.PHONY: demo test venv notebooks benchmark clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The C++ pooling kernel; without a compiler the pools use MXNet operators instead.
$(NATIVE): $(wildcard cnn_base/csrc/*.cc cnn_base/csrc/*.h) $(STAMP)
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

notebooks: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,notebooks]'
	@echo "open them with: $(BIN)/jupyter lab notebooks/"

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info cnn_base/_build
