# sinter: `make demo` and `make test` work on a fresh machine (they install what is missing).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build test demo bench clean asan fuzz

all: build

deps:
	@bash scripts/install.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# what ctest's summary does not say: why Python reference checks were skipped
PY_NOTE = if [ -z "$$SINTER_PY_TORCH" ]; then echo "note: app/test_interop_torch runs only with PyTorch in .venv, which is opt-in (large): SINTER_PY_TORCH=1 make test"; fi; \
	if [ -n "$$SINTER_SKIP_PY_REFS" ]; then echo "note: SINTER_SKIP_PY_REFS is set: Python reference checks that could not run were SKIPPED (see README)"; fi

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(PY_NOTE)

demo: build
	@bash scripts/demo.sh $(BUILD)

bench: build
	@bash bench/run_cpu_bench.sh $(BUILD)

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSINTER_SANITIZE=ON -DSINTER_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)
	@$(PY_NOTE)

clean:
	rm -rf $(BUILD) build-asan
