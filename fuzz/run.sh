#!/usr/bin/env bash
# Fuzzes the spells and invoices readers: each target for SECONDS (default
# 30), starting from the seeds in fuzz/corpus/<target>/. What a run learns
# goes to fuzz/work/<target>/ (not committed); a crash stops that target,
# leaves its input in fuzz/artifacts/<target>/ and makes this script exit
# non-zero once every target has run.
#
#   bash fuzz/run.sh [SECONDS]
#
# cargo-fuzz is installed if missing. It passes flags only a nightly rustc
# takes (-Z sanitizer=address, sancov passes); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. Targets are built with -O: fuzz/Cargo.toml
# turns debug assertions and overflow checks back on for every crate but
# calamine (see the note there).
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: bash fuzz/run.sh [SECONDS]" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

failed=()
for target in spells invoices; do
    mkdir -p "fuzz/work/$target"
    echo "== $target: ${seconds}s" >&2
    if ! cargo fuzz run -O "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzzing found a crash in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crash in ${seconds}s per target" >&2
