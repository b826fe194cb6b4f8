#!/usr/bin/env bash
# Runs every check and test. Installs what the tests need on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# cmake builds libopus for the `opus` crate (client and tests); Chromium runs the page tests.
command -v cmake >/dev/null || need_apt+=(cmake)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs npm)
# libFuzzer (the fuzz targets' driver) is C++.
command -v g++ >/dev/null || need_apt+=(g++)
# The README tour's Python snippet; Debian's own Python takes it from apt (PEP 668).
python_websockets=ok
if ! python3 -c 'import websockets' 2>/dev/null; then
    if [ "$(command -v python3)" = /usr/bin/python3 ]; then
        need_apt+=(python3-websockets)
    else
        python_websockets=pip
    fi
fi
# The swarm's PNG plots draw their text with a system font.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
# The network-namespace test creates a veth pair with `ip`.
command -v ip >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "missing packages: ${need_apt[*]} (run as root or install them)" >&2
        exit 1
    fi
fi

if [ "$python_websockets" = pip ]; then
    python3 -m pip install --quiet --disable-pip-version-check websockets
fi

# The page driver's one dependency (Playwright's library, no browser download).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    (cd tests/browser && npm install --no-audit --no-fund --loglevel=error)
fi

cargo fmt --all -- --check
# Layers only point down: any import circle between files fails here, with the circle printed.
python3 scripts/check-imports.py
# Files over 600 lines and functions over 100 fail unless listed with a reason.
python3 scripts/check-sizes.py
# The core is sans-IO: no runtime, actor, socket, database, metrics or HTTP crate below it.
if cargo tree -p amphi-core -e normal --prefix none --locked \
    | grep -E '^(actix|tokio|str0m|dashmap|metrics|rusqlite|reqwest|hyper|mio|socket2) '; then
    echo "amphi-core depends on a runtime crate (above); it must stay sans-IO" >&2
    exit 1
fi
cargo clippy --workspace --all-targets --locked -- -D warnings
# No new second versions of a crate in the server's runtime tree (accepted ones are listed).
./scripts/check-duplicates.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary of the workspace.
read -r passed failed < <(grep -E '^test result:' "$log" \
    | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' \
    | awk '{p += $1; f += $2} END {print p + 0, f + 0}')
echo "tests: $passed passed, $failed failed"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
# A fresh server's /metrics passes promtool, and every dashboard query answers on it.
./scripts/check-metrics.sh
# The JS package against a server it starts (Node's test runner).
(cd js && npm install --no-audit --no-fund --loglevel=error && AMPHI_BIN=../target/debug/amphi npm test)
# The README's tour, run as written.
./scripts/tour.sh
# Every fuzz target, a bounded and reproducible run each (scripts/fuzz.sh).
./scripts/fuzz.sh
