#!/usr/bin/env bash
# Runs the README's five-minute tour as written: every ```sh block of that section, in order,
# from the repository's root. Fails if any command fails or the tour's recording is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
script=$(mktemp)
trap 'rm -f "$script" heard.wav' EXIT
python3 - "$script" <<'PY'
import re, sys
readme = open("README.md").read()
section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
# The tour's background jobs (the server, the host) end with it, whether it passes or not.
prelude = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
open(sys.argv[1], "w").write(prelude + "\n".join(blocks))
PY
timeout 600 bash "$script"
# The listener recorded the host's tone: five seconds of 48 kHz 16-bit audio.
size=$(stat -c %s heard.wav)
if [ "$size" -lt 400000 ]; then
    echo "tour: heard.wav is $size bytes; five seconds of audio were expected" >&2
    exit 1
fi
echo "tour: ran as written (heard.wav: $size bytes)"
