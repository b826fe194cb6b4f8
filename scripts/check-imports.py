#!/usr/bin/env python3
"""Prints the file-level import graph's cycles in each crate of the workspace, and actor files
that import another actor's file; fails on any.

A file depends on another when it names a path inside it (`use crate::a::b`, `crate::a::B`,
`super::x`). `mod` declarations and test modules are not dependencies: a parent declaring its
child, or a test reaching into the code it tests, is how Rust lays out a module, not a knot.

Usage: scripts/check-imports.py [--graph] [crate_src_dir ...]
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CRATES = ["src", "client/src", "loadtest/src", "crates/proto/src", "crates/core/src"]


def strip(text):
    """Removes comments, string and char literals (keeping line structure)."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = tree.strip()
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix = tree[:i]
                inner = tree[i + 1 : tree.rindex("}")]
                parts, start, d = [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        d += 1
                    elif c == "}":
                        d -= 1
                    elif c == "," and d == 0:
                        parts.append(inner[start:j])
                        start = j + 1
                parts.append(inner[start:])
                out = []
                for p in parts:
                    if p.strip():
                        out.extend(prefix + x for x in expand_use(p))
                return out
            depth += 1
    return [re.sub(r"\s+as\s+\w+$", "", tree)]


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}  # module path tuple -> file
        for dirpath, _, names in os.walk(src):
            for n in names:
                if not n.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, n)
                rel = os.path.relpath(path, src)[:-3].split(os.sep)
                if rel[-1] in ("lib", "main") and len(rel) == 1:
                    mod = ()
                elif rel[-1] == "mod":
                    mod = tuple(rel[:-1])
                else:
                    mod = tuple(rel)
                if mod == () and rel[-1] == "main" and os.path.exists(os.path.join(src, "lib.rs")):
                    mod = ("<main>",)
                self.files[mod] = path

    def is_test(self, mod):
        return "tests" in mod or any(m.endswith("_tests") for m in mod)

    def resolve(self, segments):
        """The file owning the longest prefix of `segments`."""
        for n in range(len(segments), -1, -1):
            if tuple(segments[:n]) in self.files:
                return tuple(segments[:n])
        return None

    def edges(self):
        graph = {m: set() for m in self.files if not self.is_test(m)}
        for mod in graph:
            text = strip(open(self.files[mod], encoding="utf-8").read())
            # Inline `mod x { ... }` blocks named tests are test code.
            text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*", "", text, flags=re.S)
            paths = []
            for m in re.finditer(r"\buse\s+([^;]+);", text):
                paths.extend(expand_use(m.group(1)))
            paths.extend(re.findall(r"\b((?:crate|super)(?:::\w+)+)", text))
            # Paths through a child module the file declares (`mod worker;` then `worker::X`).
            for child in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M):
                paths.extend(
                    "self::" + p for p in re.findall(r"(?<![\w:])(" + child + r"(?:::\w+)+)", text)
                )
            base = mod if mod != ("<main>",) else ()
            # A file `a/b.rs` is module a::b; its `super` is `a`.
            for p in paths:
                segs = [s for s in p.replace(" ", "").split("::") if s]
                if not segs:
                    continue
                if segs[0] == "crate":
                    target = segs[1:]
                elif segs[0] == "super":
                    up = list(base)
                    while segs and segs[0] == "super":
                        up = up[:-1]
                        segs = segs[1:]
                    target = up + segs
                elif segs[0] == "self":
                    target = list(base) + segs[1:]
                else:
                    continue
                dep = self.resolve(target)
                if dep is None or dep == mod or self.is_test(dep) or dep == ():
                    continue
                graph[mod].add(dep)
        return graph


def actor_files(crate):
    """Modules whose file implements an actix `Actor`."""
    out = set()
    for mod, path in crate.files.items():
        if crate.is_test(mod):
            continue
        if re.search(r"\bimpl(?:<[^>]*>)?\s+(?:actix::)?Actor\s+for\b", strip(open(path).read())):
            out.add(mod)
    return out


def same_actor(a, b):
    """One actor split over a file and its child files (`calls/actor.rs`, `calls/actor/…`)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def actor_crossings(crate, graph):
    """(actor file, other actor's file) pairs where one names a path in the other."""
    actors = actor_files(crate)
    family = lambda m: next((a for a in actors if same_actor(a, m) and len(a) <= len(m)), None)
    bad = []
    for mod, deps in graph.items():
        own = family(mod)
        if own is None:
            continue
        for d in deps:
            other = family(d)
            if other is not None and other != own:
                bad.append((mod, d))
    return sorted(bad)


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show = "--graph" in sys.argv
    crates = args or [c for c in DEFAULT_CRATES if os.path.isdir(os.path.join(ROOT, c))]
    bad = 0
    for c in crates:
        crate = Crate(os.path.join(ROOT, c))
        graph = crate.edges()
        name = lambda m: os.path.relpath(crate.files[m], ROOT)
        if show:
            for m in sorted(graph):
                deps = ", ".join(sorted(name(d) for d in graph[m]))
                print(f"{name(m)} -> {deps}")
        for comp in sccs(graph):
            if len(comp) > 1:
                bad += 1
                print(f"import cycle in {c}: " + " <-> ".join(sorted(name(m) for m in comp)))
        for a, b in actor_crossings(crate, graph):
            bad += 1
            print(f"actor file imports another actor's file: {name(a)} -> {name(b)}")
    if bad:
        print(
            f"{bad} import cycle(s) or actor crossing(s): every arrow must point down, and "
            "actors reach each other through the handles in messages.rs"
        )
        return 1
    print(f"no import cycles and no actor importing another in {', '.join(crates)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
