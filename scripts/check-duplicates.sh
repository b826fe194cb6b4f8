#!/usr/bin/env bash
# Fails when the server's runtime dependency tree gains a second version of a crate that
# scripts/duplicates-allowed.txt does not list. Each listed pair is pulled in by upstream
# crates (the file says which); a new one means a dependency change to review.
set -euo pipefail
cd "$(dirname "$0")/.."
current=$(cargo tree -d -p amphi -e normal --depth 0 --prefix none --locked \
    | grep -v '^$' | sed 's/ (.*//' | sort -u)
allowed=$(grep -v '^#' scripts/duplicates-allowed.txt | awk 'NF {print $1" "$2}' | sort -u)
new=$(comm -23 <(echo "$current") <(echo "$allowed"))
if [ -n "$new" ]; then
    echo "new duplicate crate versions in the server's dependencies:" >&2
    echo "$new" >&2
    echo "remove the duplicate, or list it with its reason in scripts/duplicates-allowed.txt" >&2
    exit 1
fi
echo "duplicate crate versions: $(echo "$current" | wc -l), all accepted"
