#!/usr/bin/env python3
"""Fails when modules of src/ import each other in a circle (issue #15). A file is a node; an
edge is any `crate::…`, `super::…` (brace groups too) or (from a parent) bare `child::…` path it names, so a
parent that calls into a child which uses the parent's items counts as a circle too. Paths
through `pub use` re-exports are read as naming the re-exporting module: conservative."""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for d, _, files in os.walk(root):
    for f in files:
        if f.endswith(".rs"):
            rel = os.path.relpath(os.path.join(d, f), root)[:-3].split("/")
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods["::".join(rel)] = os.path.join(d, f)


def resolve(path):
    parts = [p for p in path.split("::") if p]
    while parts:
        if "::".join(parts) in mods:
            return "::".join(parts)
        parts.pop()
    return None


edges = {m: set() for m in mods}
for m, p in mods.items():
    # Unit tests may use anything; they are not part of the module graph.
    src = re.split(r"#\[cfg\(test\)\]\s*mod tests", open(p).read())[0]
    parent = m.split("::")[:-1] if m else []
    uses = [u.rstrip(":") for u in re.findall(r"crate::([A-Za-z0-9_:]+)", src)]
    for base, group in re.findall(r"crate::([a-z0-9_:]*)\{([^}]*)\}", src):
        uses += [base + item.strip().split(" ")[0] for item in group.split(",") if item.strip() not in ("", "self")]
    uses += ["::".join(parent + [u.rstrip(":")]) for u in re.findall(r"\bsuper::([A-Za-z0-9_:]+)", src)]
    for base, group in re.findall(r"\bsuper::([A-Za-z0-9_:]*)\{([^}]*)\}", src):
        uses += ["::".join(parent + [(base + item.strip().split(" ")[0]).rstrip(":")]) for item in group.split(",") if item.strip() not in ("", "self")]
    for child in (c for c in mods if c != m and c.rsplit("::", 1)[0] == m or (m == "" and "::" not in c and c)):
        name = child.split("::")[-1]
        body = re.sub(r"(pub(\([a-z]+\))? )?mod " + name + ";", "", src)
        if re.search(r"(?<![:\w])" + name + r"::", body):
            uses.append(child)
    for u in uses:
        t = resolve(u)
        if t and t != m:
            edges[m].add(t)

index, low, stack, on, circles = {}, {}, [], set(), []
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in edges[v]:
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
        if len(comp) > 1:
            circles.append(sorted(comp))


for v in mods:
    if v not in index:
        visit(v)
for comp in circles:
    print("import circle:", ", ".join(comp))
    for a in comp:
        print("   ", a, "->", ", ".join(sorted(b for b in edges[a] if b in comp)))
sys.exit(1 if circles else 0)
