#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time. Fails loudly when the
# nightly toolchain is missing instead of skipping silently.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-45}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "ERROR: no nightly toolchain: cargo-fuzz needs one (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cd fuzz
for target in $(cargo +nightly fuzz list); do
    echo "--- fuzz target ${target}: ${FUZZ_SECONDS}s"
    mkdir -p "corpus/${target}"
    cargo +nightly fuzz run "${target}" "corpus/${target}" -- \
        -max_total_time="${FUZZ_SECONDS}" -print_final_stats=1 2>&1 | tail -15
done
