#!/usr/bin/env bash
# Fuzzes the spells and invoices readers: each target for SECONDS (default
# 30), starting from the seeds in fuzz/corpus/<target>/. What a run learns
# goes to fuzz/work/<target>/ (not committed); a crash stops that target,
# leaves its input in fuzz/artifacts/<target>/ and makes this script exit
# non-zero once every target has run.
#
#   bash fuzz/run.sh [SECONDS]
#   FUZZ_SANITIZER=address bash fuzz/run.sh 600     with AddressSanitizer too
#   bash fuzz/run.sh --build-only                   builds the targets, runs nothing
#   FUZZ_SKIP_BUILD=1 bash fuzz/run.sh 20           runs what was built
#
# The targets are cargo-fuzz targets (libfuzzer-sys). This script builds
# them as `cargo fuzz build -O` does, with the same coverage
# instrumentation (SanitizerCoverage: inline 8-bit counters, PC table,
# comparison tracing; --cfg fuzzing) for the host target only, so that build
# scripts and proc-macros stay uninstrumented; it needs no cargo-fuzz, which
# CI would otherwise have to build first. `cargo fuzz run spells` works as
# well where cargo-fuzz is installed. The flags are ones only a nightly
# rustc takes; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Debug assertions and overflow checks are on for every crate but calamine:
# fuzz/Cargo.toml's profile says so (flags here would apply to calamine too). By default no AddressSanitizer: every
# crate of ours forbids `unsafe`, and the build and the runs are much
# quicker without it.
set -euo pipefail

build_only=false
if [ "${1:-}" = --build-only ]; then
    build_only=true
    shift
fi
seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: bash fuzz/run.sh [SECONDS]" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

host="$(rustc -vV | sed -n 's/^host: //p')"
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
)
case "${FUZZ_SANITIZER:-none}" in
    none) ;;
    address) flags+=(-Zsanitizer=address) ;;
    *)
        echo "FUZZ_SANITIZER is none or address" >&2
        exit 2
        ;;
esac
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="${flags[*]}"
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
    echo "== building the fuzz targets for $host" >&2
    cargo build --release --locked --bins --target "$host" --target-dir target
fi
$build_only && exit 0
binaries="target/$host/release"

failed=()
for target in spells invoices; do
    mkdir -p "work/$target" "artifacts/$target"
    echo "== $target: ${seconds}s" >&2
    if ! "$binaries/$target" "work/$target" "corpus/$target" \
        -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzzing found a crash in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crash in ${seconds}s per target" >&2
