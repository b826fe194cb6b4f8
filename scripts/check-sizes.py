#!/usr/bin/env python3
"""Fails when a Rust file grows past 600 lines or a function past 100 lines, unless
scripts/sizes-allowed.txt lists it with its reason. Long files and functions are where
unrelated concerns hide; a listed one is a known case to split when it is next touched.

--report prints every file and function over the limits, listed or not.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIRS = ["src", "client/src", "loadtest/src", "crates/proto/src", "crates/core/src", "tests", "benches"]
MAX_FILE = 600
MAX_FN = 100
FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def strip(line, state):
    """The line without string literals, char literals and comments (enough for braces)."""
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if state["block"]:
            if line.startswith("*/", i):
                state["block"] = False
                i += 2
            else:
                i += 1
            continue
        if state["raw"] is not None:
            end = '"' + "#" * state["raw"]
            if line.startswith(end, i):
                state["raw"] = None
                i += len(end)
            else:
                i += 1
            continue
        if state["str"]:
            if c == "\\":
                i += 2
            elif c == '"':
                state["str"] = False
                i += 1
            else:
                i += 1
            continue
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m:
            state["raw"] = len(m.group(1))
            i += len(m.group(0))
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        m = re.match(r"b?'(\\.|[^\\'])'", line[i:])
        if m:
            i += len(m.group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    """(name, first line, length in lines) of every function with a body."""
    lines = path.read_text().splitlines()
    state = {"block": False, "raw": None, "str": False}
    code = [strip(l, state) for l in lines]
    found = []
    for start, text in enumerate(code):
        m = FN.match(text)
        if not m:
            continue
        depth = 0
        opened = False
        for end in range(start, len(code)):
            for c in code[end]:
                if c == "{":
                    depth += 1
                    opened = True
                elif c == "}":
                    depth -= 1
                elif c == ";" and not opened and depth == 0:
                    break
            else:
                if opened and depth == 0:
                    found.append((m.group(1), start + 1, end - start + 1))
                    break
                continue
            break
    return found


def main():
    report = "--report" in sys.argv
    allowed = set()
    for line in (ROOT / "scripts/sizes-allowed.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            allowed.add(line.split()[0])
    over = []
    for d in DIRS:
        for path in sorted((ROOT / d).rglob("*.rs")):
            if "node_modules" in path.parts:
                continue
            rel = path.relative_to(ROOT).as_posix()
            n = len(path.read_text().splitlines())
            if n > MAX_FILE:
                over.append((rel, f"{rel}: {n} lines"))
            for name, line, length in functions(path):
                if length > MAX_FN:
                    key = f"{rel}::{name}"
                    over.append((key, f"{key} (line {line}): {length} lines"))
    new = [text for key, text in over if key not in allowed]
    if report:
        for key, text in over:
            print(("  listed " if key in allowed else "  NEW    ") + text)
    stale = allowed - {key for key, _ in over}
    for key in sorted(stale):
        print(f"listed but no longer over the limit (remove it from sizes-allowed.txt): {key}")
    if new:
        print(f"over {MAX_FILE} lines per file or {MAX_FN} per function:", file=sys.stderr)
        for text in new:
            print("  " + text, file=sys.stderr)
        print("split it, or list it with its reason in scripts/sizes-allowed.txt", file=sys.stderr)
        return 1
    if stale:
        return 1
    print(f"file and function sizes: {len(over)} over the limits, all listed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
