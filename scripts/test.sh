#!/usr/bin/env bash
# Sets up and runs the whole fleece test suite: installs missing Debian packages,
# builds (warnings as errors), runs unit + end-to-end tests, then builds the
# AddressSanitizer/UBSan configuration with clang and runs everything again under it:
# unit tests, end-to-end tests against the sanitized daemon, and the fuzz targets
# (bounded in runs).
# Usage: scripts/test.sh [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."

asan=1
for arg in "$@"; do
  case "$arg" in
    --no-asan) asan=0 ;;
    *) echo "usage: $0 [--no-asan]" >&2; exit 2 ;;
  esac
done

jobs=$(nproc)
bash scripts/install-deps.sh

echo "== build (Release, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFLEECE_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

echo "== tests (unit + integration)"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 900

if [ "$asan" = 1 ]; then
  echo "== build (clang, ASan+UBSan, fuzz targets)"
  CC=clang CXX=clang++ cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug \
    -DFLEECE_SANITIZE=ON -DFLEECE_FUZZ=ON -DFLEECE_WERROR=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  echo "== tests under ASan/UBSan (unit, integration against the ASan daemon, fuzz)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 900
fi
echo "== all tests passed"
