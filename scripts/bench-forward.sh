#!/usr/bin/env bash
# The forward bench twice: natively (allocations and CPU per packet written to a listener) and
# under callgrind collecting inside the media worker's fan-out only (instructions per packet
# written: stable on a busy machine, unlike time).
#   scripts/bench-forward.sh [listeners] [seconds]    (default 50 listeners, 10 s; callgrind 10, 5)
set -euo pipefail
cd "$(dirname "$0")/.."
LISTENERS=${1:-50}
SECONDS_=${2:-10}
bin=$(cargo bench --bench forward --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "forward" and m.get("executable"):
        print(m["executable"])')
AMPHI_BENCH_LISTENERS=$LISTENERS AMPHI_BENCH_SECONDS=$SECONDS_ "$bin"
if ! command -v valgrind >/dev/null; then
    echo "valgrind not installed: no instruction counts (apt-get install valgrind)"
    exit 0
fi
out=$(mktemp)
log=$(AMPHI_BENCH_LISTENERS=10 AMPHI_BENCH_SECONDS=5 valgrind --tool=callgrind \
    --toggle-collect='*Worker*fan_out*' --callgrind-out-file="$out" "$bin" 2>&1)
written=$(echo "$log" | awk '/packets written \(whole run\)/ {print $NF}')
ir=$(echo "$log" | awk '/Collected :/ {print $NF}')
rm -f "$out"
python3 -c "print(f'fan-out under callgrind (10 listeners): {$ir} instructions for {$written} packets written = {$ir/$written:.0f} per packet per listener')"
