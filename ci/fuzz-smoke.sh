#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each,
# default 20: three targets, one minute plus the build; a smoke run, the
# long runs are in BENCHMARKS.md; without a sanitizer the targets run 4-8x
# faster than under ASan, so 20 s covers more inputs than 40 s did). Fails
# loudly when the nightly toolchain is missing instead of skipping
# silently, and when a target crashes or a target exists that this script
# does not run.
# The targets' inputs and their tests live in flush-tests
# (`tests/src/fuzz/`): the workspace's `cargo test` checks the committed seed
# corpora and plans, so this script builds the fuzz crate only once.
#
# The flags, and why:
# - RUSTFLAGS="--cfg madsim": `sim_plan` and `cli_input` link the simulator,
#   which needs the cfg. cargo-fuzz replaces .cargo/config.toml's rustflags
#   with its own but appends an existing RUSTFLAGS, so the cfg goes here.
# - --features sim: switches those two targets on (`scheduler_ops` alone
#   builds without the cfg: `cargo +nightly fuzz run scheduler_ops`).
#   Every target gets the same RUSTFLAGS and features, so one build serves
#   all three.
# - -s none: no sanitizer. Our crates forbid unsafe code, so what
#   AddressSanitizer watches for (out-of-bounds, use-after-free) cannot
#   happen in the code under test, and instrumenting arrow, parquet and
#   madsim for it cost 3m10s of this build (9m10s against 6m00s without,
#   BENCHMARKS.md "CI time") and runs the targets slower. Leaks stay
#   findings: `sim_plan` asserts that every run freed its world (the leak a
#   sweep cannot afford), and sweeps report their peak RSS. LeakSanitizer
#   alone (-s leak) hangs at start on this machine. Long fuzzing sessions
#   run with cargo-fuzz's default, AddressSanitizer (README).
# - libFuzzer's RSS limit stays at its default (-rss_limit_mb=2048).
#
# `ci/fuzz-smoke.sh build` only installs cargo-fuzz and builds (CI starts
# it in the background while the workspace's tests run), `ci/fuzz-smoke.sh
# run` only runs the targets (building what is missing); no argument does
# both.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
PHASE=${1:-all}
case ${PHASE} in
    all | build | run) ;;
    *)
        echo "usage: ci/fuzz-smoke.sh [build|run]" >&2
        exit 2
        ;;
esac
# A compiler wrapper of the stable toolchain (CI's clippy pass) must not
# wrap nightly's build.
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "ERROR: no nightly toolchain: cargo-fuzz needs one (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cd fuzz
export RUSTFLAGS="--cfg madsim"
BUILD_FLAGS=(--features sim -s none)

# Target → extra libFuzzer flags. `sim_plan` runs without libFuzzer's
# entropic power schedule: a whole simulation touches tens of thousands of
# coverage features, and the schedule's per-feature bookkeeping took 80 %
# of the target's time (60 execs/s from the seed corpus, 600 without it;
# BENCHMARKS.md).
declare -A EXTRA=(
    [scheduler_ops]=""
    [sim_plan]="-max_len=600 -timeout=150 -entropic=0"
    [cli_input]=""
)

targets=$(cargo +nightly fuzz list)
for target in ${targets}; do
    if [[ -z ${EXTRA[${target}]+set} ]]; then
        echo "ERROR: fuzz target ${target} is not listed in ci/fuzz-smoke.sh; add it" >&2
        exit 1
    fi
done

if [[ ${PHASE} != run ]]; then
    echo "--- building the fuzz targets (RUSTFLAGS=${RUSTFLAGS} ${BUILD_FLAGS[*]})"
    build_started=${SECONDS}
    cargo +nightly fuzz build "${BUILD_FLAGS[@]}"
    echo "build took $((SECONDS - build_started))s"
fi
if [[ ${PHASE} == build ]]; then
    exit 0
fi

for target in ${targets}; do
    echo "--- fuzz target ${target}: ${FUZZ_SECONDS}s"
    mkdir -p "corpus/${target}"
    log="target/fuzz-smoke-${target}.log"
    # shellcheck disable=SC2086 # EXTRA holds several words
    if ! cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "${target}" \
        "corpus/${target}" -- -max_total_time="${FUZZ_SECONDS}" -print_final_stats=1 \
        ${EXTRA[${target}]} >"${log}" 2>&1; then
        tail -120 "${log}"
        echo "FAILED: fuzz target ${target} crashed; the input is under fuzz/artifacts/${target}/" >&2
        exit 1
    fi
    grep -E "^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))" "${log}"
done
