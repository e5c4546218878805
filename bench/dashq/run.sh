#!/bin/sh
# Builds and runs the dashq benchmark (bench/dashq/dashq_bench.c) with an
# optimised, non-sanitised build, outside the CMake project on purpose:
#  - libherdcommon comes from a Release configuration in $BUILD
#    (default build-bench-dashq, git-ignored), without tests;
#  - dashq.c, traces.c and the bench are compiled here with -O2, so a
#    coordinator module being edited elsewhere cannot break the bench.
# Arguments go to the bench: run.sh --help prints them.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench-dashq}
CC=${CC:-cc}

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DHERD_TESTS=OFF \
    -DHERD_SANITIZE=OFF -DHERD_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target herdcommon >/dev/null
# shellcheck disable=SC2046 # pkg-config output is a list of flags
$CC -std=c11 -O2 -DNDEBUG -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
    -Wall -Wextra -I"$ROOT/include" -iquote "$ROOT/src/coordinator" \
    $(pkg-config --cflags libuv libcjson sqlite3) \
    "$ROOT/bench/dashq/dashq_bench.c" "$ROOT/src/coordinator/dashq.c" \
    "$ROOT/src/coordinator/traces.c" -o "$BUILD/dashq-bench" \
    "$BUILD/libherdcommon.a" \
    $(pkg-config --libs libuv libcjson sqlite3 libmicrohttpd libcurl) \
    -lpthread -lm
exec "$BUILD/dashq-bench" "$@"
