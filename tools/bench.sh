#!/usr/bin/env bash
# weft's benchmark command: `bash tools/bench.sh [workload ...]`.
# Builds //benchmarks:bench with -c opt and runs it with the given workloads
# (none: all of them). bazel run starts it in its runfiles tree and sets
# BUILD_WORKING_DIRECTORY to the repository root (this script cds there).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
bash tools/deps.sh || exit 1
exec bazel run -c opt //benchmarks:bench -- "$@"
