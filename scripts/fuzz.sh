#!/usr/bin/env bash
# Runs every fuzz target for a bounded number of inputs on the stable toolchain (cargo fuzz with
# --sanitizer none). With the default fixed seed a run is reproducible (CI runs this); set
# FUZZ_SECONDS to fuzz for that long per target with a random seed instead (exploring). The
# kept corpus (fuzz/corpus/<target>) is only read; a crash lands in fuzz/artifacts/<target>
# and fails the run. Fix it, then keep the input in fuzz/regressions/<target>: `cargo test`
# replays both directories.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
# New units go to a scratch corpus; the kept one (seeds) is read only.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz >/dev/null
fi
for target in request ogg jitter channel call sdp stun red jwt; do
    if [ -n "${FUZZ_SECONDS:-}" ]; then
        bound=(-max_total_time="$FUZZ_SECONDS")
    else
        # About ten seconds each on a 2-core machine (the targets' speeds differ a hundredfold).
        case $target in
            request) runs=1500000 ;;
            ogg) runs=5000000 ;;
            jitter) runs=500000 ;;
            channel) runs=100000 ;;
            call) runs=100000 ;;
            sdp) runs=400000 ;;
            stun) runs=10000000 ;;
            red) runs=10000000 ;;
            jwt) runs=2000000 ;;
        esac
        bound=(-runs="${FUZZ_RUNS:-$runs}" -seed=1)
    fi
    echo "fuzz: $target (${bound[*]})"
    mkdir -p "$work/$target"
    cargo fuzz run --sanitizer none -O "$target" "$work/$target" "corpus/$target" -- \
        "${bound[@]}" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
        | grep -E "^(stat::number_of_executed_units|stat::new_units_added|SUMMARY|==[0-9]+== ERROR)" || true
    if ls artifacts/"$target"/crash-* artifacts/"$target"/oom-* artifacts/"$target"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $target found a failing input in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
