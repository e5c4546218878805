# A thin wrapper over CMake. `make demo` and `make test` each do all the
# set-up on a fresh Debian 12 machine (scripts/bootstrap installs what is
# missing).
BUILD_DIR ?= build
TEST_DIR ?= build-test
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build test demo bench bootstrap format clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@scripts/dashboard-deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD_DIR) -j$(JOBS)

# Sanitized build (ASan+UBSan), warnings as errors, every test via ctest.
test: bootstrap
	@scripts/dashboard-deps
	@cmake -S . -B $(TEST_DIR) -DHERD_SANITIZE=ON -DHERD_WERROR=ON \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(TEST_DIR) -j$(JOBS)
	@scripts/e2e-deps
	@cd $(TEST_DIR) && ctest --output-on-failure -j$(JOBS)

demo: build
	@scripts/demo $(BUILD_DIR)

# Benchmarks, not tests: an optimised build in build-bench/, then herd next
# to a direct connection and nginx; writes bench/results/latest.md (about 9 min).
bench:
	@scripts/bootstrap --bench
	@scripts/dashboard-deps
	@bench/run

format:
	@clang-format -i include/herd/*.h src/*/*.[ch] tests/unit/*.[ch]

clean:
	rm -rf $(BUILD_DIR) $(TEST_DIR)
