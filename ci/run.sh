#!/usr/bin/env bash
# The CI job. `.ci/run` calls this on a clean clone. It needs only the Rust
# toolchains (stable, plus nightly for cargo-fuzz); it installs the rest.
# About 14 minutes on 2 cores (aim: 18; 828 s on a quiet machine, the fuzz
# build beside the tests); most of it the test build (which also lints)
# and the fuzz build (BENCHMARKS.md, "CI time").
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s (%s) ===\n' "$1" "$(date -u +%H:%M:%S)"; }
SECONDS=0

step "toolchain"
cargo --version
rustc --version

step "format"
cargo fmt --all -- --check
# fuzz/ is its own workspace, outside `--all`.
(cd fuzz && cargo fmt -- --check)

step "clippy and tests (README's test command), from one build"
# `cargo clippy` is `cargo check` with clippy-driver as the workspace's
# compiler wrapper; a check build shares nothing with the test build, so it
# cost a second pass over every dependency (about 4 minutes here). Here
# the test build itself goes through clippy-driver, which lints our crates
# and then compiles them as rustc would: one build, every lint of
# `cargo clippy --workspace --all-targets -- -D warnings` (the benches are
# built in test mode for it), and the dependencies, which clippy never
# lints, compiled once. CLIPPY_ARGS is how cargo-clippy hands its
# arguments to the driver.
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
cargo test --workspace --all-targets --no-run

step "fuzz build, in the background while the tests and sweeps run"
# The fuzz build (its own workspace, nightly, every crate again) takes
# minutes of CPU; the tests and sweeps below keep the two cores only partly
# busy (long single-threaded simulations), so the build fills the gaps at
# the lowest priority. Same session, so `nice` counts against the tests
# (a new session would get its own scheduling group and half the CPU).
# The crash test, which times real fsyncs, waits until the build is done.
FUZZ_BUILD_LOG=target/ci-fuzz-build.log
mkdir -p target
set -m
nice -n 19 ci/fuzz-smoke.sh build >"${FUZZ_BUILD_LOG}" 2>&1 &
fuzz_build_pid=$!
set +m
# Its own process group (job control above): a failing step stops it all.
trap 'kill -- -"${fuzz_build_pid}" 2>/dev/null || true' EXIT

step "tests (README's test command)"
# Everything it needs was built just above.
cargo test --workspace

step "a plain build of the core has no bug switch"
# Alone, flush-core resolves without `planted-bugs` (the workspace test
# run above unified it in): cargo's own feature resolution says so, with no
# second build. (`cargo test -p flush-core --lib bugs::` shows the same
# from the inside: `Bugs` is zero-sized there.)
core_features=$(cargo tree -p flush-core -e features -i flush-core --prefix none)
echo "${core_features}"
if grep -q 'planted-bugs' <<<"${core_features}"; then
    echo "a plain flush-core build has the planted-bugs feature on"
    exit 1
fi

step "flushsim: the binary the test build made"
# `cargo test` built flushsim for the simulator's integration tests (dev
# profile, our crates at opt-level 1, debug assertions on): the sweeps below
# run it as it is, strict checks included, with no second (release) build.
FLUSHSIM=target/debug/flushsim
if [[ ! -x ${FLUSHSIM} ]]; then
    echo "${FLUSHSIM} was not built by the tests; building it"
    cargo build -p flush-sim --bin flushsim
fi

step "sweep: fixed seed range"
"$FLUSHSIM" sweep --seed-range 0..500

step "sweep: fresh seeds derived from the commit"
commit=$(git rev-parse HEAD 2>/dev/null || echo 0)
fresh_start=$(( 16#${commit:0:8} % 1000000000 + 1000000 ))
echo "fresh seeds: ${fresh_start}..$(( fresh_start + 300 )) (from commit ${commit:0:12})"
"$FLUSHSIM" sweep --seed-range "${fresh_start}..$(( fresh_start + 300 ))"

step "determinism"
"$FLUSHSIM" check-determinism --seeds 20

step "canary: a planted bug must make a short sweep fail"
if "$FLUSHSIM" sweep --seeds 200 --bug drop-pending-writes-on-failure > /tmp/flushsim-canary.log 2>&1; then
    echo "CANARY FAILED: the sweep passed with a planted bug switched on"
    tail -20 /tmp/flushsim-canary.log
    exit 1
fi
grep -m1 "replay" /tmp/flushsim-canary.log || true
echo "canary caught, as it must be"

step "fuzz build: waiting for it"
if ! wait "${fuzz_build_pid}"; then
    tail -60 "${FUZZ_BUILD_LOG}"
    echo "FAILED: the fuzz build (log above, ${FUZZ_BUILD_LOG})" >&2
    exit 1
fi
trap - EXIT
grep -E "^(installing|--- building|build took)" "${FUZZ_BUILD_LOG}" || true

step "crash test: the tokio engine as a real process, SIGKILLed and restarted over real files"
"$FLUSHSIM" crash-test --rounds 200 --seed "${fresh_start}"

step "crash-test canary: torn WAL tails left on disk must be caught"
# A failed crash test keeps its directory as evidence; the canary's failure
# is the expected one, so its directories live under one we remove.
canary_dir=$(mktemp -d /tmp/flushsim-crash-canary.XXXXXX)
caught=no
for seed in 1 2 3 4; do
    if ! "$FLUSHSIM" crash-test --rounds 12 --seed "${seed}" --skip-torn-tail-repair \
        --dir "${canary_dir}/seed-${seed}" > /tmp/flushsim-crash-canary.log 2>&1; then
        caught=yes
        grep -m1 "FAIL" /tmp/flushsim-crash-canary.log || true
        break
    fi
done
rm -rf "${canary_dir}"
if [[ ${caught} != yes ]]; then
    echo "CRASH-TEST CANARY FAILED: torn tails left on disk went unnoticed in 4 runs"
    exit 1
fi
echo "crash-test canary caught, as it must be"

step "fuzz smoke"
ci/fuzz-smoke.sh run

step "done in ${SECONDS}s"
