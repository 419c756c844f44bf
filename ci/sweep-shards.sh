#!/usr/bin/env bash
# Runs a flushsim sweep as N shard processes on this machine and merges
# their reports: the same fan-out a CI matrix or a Kubernetes Indexed Job
# does, in one place (README, "Sweeps on many machines").
#
#   ci/sweep-shards.sh N A..B OUT_DIR [more sweep arguments...]
#
# Shard k gets FLUSHSIM_SHARD_INDEX=k and FLUSHSIM_SHARD_COUNT=N and runs
# `flushsim sweep --shard auto --jobs 1`; its report goes to
# OUT_DIR/shards/shard-k.json, its log to OUT_DIR/shards/shard-k.log. The
# merged report goes to OUT_DIR/merged.json and its table to stdout.
# FLUSHSIM names the binary (default: target/release/flushsim).
# Exit: the merge's (0 pass, 1 a seed failed, 2 the shards do not add up).
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 N A..B OUT_DIR [sweep arguments...]" >&2
    exit 2
fi
count=$1
range=$2
out=$3
shift 3
flushsim=${FLUSHSIM:-target/release/flushsim}
if [[ ! $count =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: N must be a whole number of shards, at least 1; saw '$count'" >&2
    exit 2
fi
if [[ ! -x $flushsim ]]; then
    echo "$0: no flushsim binary at $flushsim (build it, or set FLUSHSIM)" >&2
    exit 2
fi

mkdir -p "$out/shards"
rm -f "$out"/shards/shard-*.json "$out"/shards/shard-*.log "$out/merged.json"

pids=()
for ((index = 1; index <= count; index++)); do
    FLUSHSIM_SHARD_INDEX=$index FLUSHSIM_SHARD_COUNT=$count \
        "$flushsim" sweep --seed-range "$range" --shard auto --jobs 1 --json "$@" \
        >"$out/shards/shard-$index.json" 2>"$out/shards/shard-$index.log" &
    pids+=("$!")
done

# A shard's exit 1 (a seed failed) is the merge's to report; anything else
# means it did not finish.
broken=0
for ((index = 1; index <= count; index++)); do
    status=0
    wait "${pids[index - 1]}" || status=$?
    if [[ $status -gt 1 ]]; then
        echo "$0: shard $index/$count exited $status:" >&2
        cat "$out/shards/shard-$index.log" >&2
        broken=1
    fi
done
if [[ $broken -ne 0 ]]; then
    exit 2
fi

status=0
"$flushsim" merge --json "$out/shards" >"$out/merged.json" || status=$?
"$flushsim" merge "$out/shards" 2>/dev/null || true
exit "$status"
