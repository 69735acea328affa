#!/usr/bin/env python3
"""Counts import cycles between the source files of src/ (a file is a module; `mod.rs` is its
folder's module). An edge A -> B means A names something of B (`use crate::b::..`, `super::..`,
an inline `crate::b::x` path; a name re-exported by `pub use` counts as its defining module).
Prints every strongly connected component of more than one module and exits 1 if there is any.
Usage: .ci/cycles.py [src-dir]"""
import os, re, sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"

def modpath(path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)

def strip(text):
    """Blanks comments, strings and char literals (a small lexer: regexes cannot tell a quote in a
    comment from one in a string)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            close = '"' + hashes
            j = text.find(close, i + 2 + len(hashes))
            out.append('""')
            i = n if j < 0 else j + len(close)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^'\\])'|'\\u\{[0-9a-fA-F]+\}'", text[i:]):
            m = re.match(r"'(\\.|[^'\\])'|'\\u\{[0-9a-fA-F]+\}'", text[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)

def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]"""
    tree = tree.replace(" ", "").replace("\n", "")
    i = tree.find("{")
    if i < 0:
        return [tree.split(" as ")[0]]
    head, body = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur); cur = ""; continue
        depth += ch == "{"; depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [p2 for p in parts if p for p2 in expand(head + p)]

files = {}
for root, _, names in os.walk(src):
    for n in names:
        # main.rs and bin/ are other crates: they reach the library as `porteiro::`.
        if n.endswith(".rs") and n != "main.rs" and "bin" not in os.path.relpath(root, src).split(os.sep):
            p = os.path.join(root, n)
            files[modpath(p)] = strip(open(p, encoding="utf-8").read())
modules = set(files)

def absolute(me, path, is_dir):
    segs = path.split("::")
    base = list(me) if is_dir else list(me[:-1])
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] == "self":
        base, segs = list(me), segs[1:]
    elif segs[0] == "super":
        base = list(me[:-1])
        segs = segs[1:]
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
    else:
        return None  # an external crate, or a local name
    return tuple(base + segs)

def is_dir_module(m):
    return os.path.exists(os.path.join(src, *m, "mod.rs")) or m == ()

reexports = {}  # (module, name) -> module that defines it
uses = {}
for m, text in files.items():
    found = []
    for stmt in re.findall(r"\buse\s+([^;]+);", text):
        found.extend(expand(stmt))
    found.extend(re.findall(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", text))
    # A module brought into scope (`use crate::services;`) and then named inline (`services::x::y`).
    for p in list(found):
        alias = p.split("::")[-1]
        if p.split("::")[0] in ("crate", "super", "self") and alias[:1].islower():
            found.extend(p + q[len(alias):] for q in re.findall(rf"(?<![\w:]){alias}(?:::\w+)+", text))
    uses[m] = found
    for stmt in re.findall(r"\bpub\s+use\s+([^;]+);", text):
        for p in expand(stmt):
            segs = p.split("::")
            if segs[0] not in ("crate", "super", "self"):
                p = "self::" + p
            a = absolute(m, p, True)
            if a:
                reexports[(m, segs[-1])] = a

def owner(path):
    """The module a path names something of: its longest module prefix, re-exports followed."""
    for _ in range(8):
        for k in range(len(path), -1, -1):
            if path[:k] in modules:
                pre = path[:k]
                break
        rest = path[len(pre):]
        if rest and (pre, rest[0]) in reexports:
            path = reexports[(pre, rest[0])] + rest[1:]
            continue
        return pre
    return pre

edges = {m: set() for m in modules}
for m, found in uses.items():
    for p in found:
        a = absolute(m, p, is_dir_module(m))
        if a is None:
            continue
        o = owner(a)
        if o != m and not (m[: len(o)] == o and o != m and False):
            edges[m].add(o)

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(comp)
for v in sorted(modules):
    if v not in index:
        visit(v)

name = lambda m: "::".join(m) or "crate"
print(f"{len(modules)} modules, {sum(len(e) for e in edges.values())} import edges, {len(sccs)} cycles")
for c in sccs:
    print("cycle:", ", ".join(sorted(name(m) for m in c)))
sys.exit(1 if sccs else 0)
