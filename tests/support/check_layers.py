"""The house rules, checked from the source: `python -m tests.support.check_layers` (CI runs it through
tests/unit/test_layers.py).

1. Layers point one way: `agentic_core` ← `activities` ← `workflows` ← `workers`. A module may
   import its own layer and the layers below it, never one above (`agentic_core` imports no
   other layer of the platform).
2. No import cycles between the platform's modules (every import counts, also the ones inside
   functions: a cycle there is still two modules that need each other).
3. No production module over `MAX_LINES` lines unless its docstring says why, in a paragraph
   that starts with "Long because" (a reason a reviewer can check).

Imports are read with `ast`, so the check needs nothing installed and runs in a second.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("agentic_core", "activities", "workflows", "workers")  # lowest first
MAX_LINES = 500
LONG_REASON = "Long because"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]


def modules() -> dict[str, Module]:
    out: dict[str, Module] = {}
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = Module(name, path)
    return out


def imports_of(mod: Module, known: dict[str, Module]) -> Iterator[tuple[str, int]]:
    """The platform modules `mod` imports (the longest known prefix of each import), with lines."""
    tree = ast.parse(mod.path.read_text(), filename=str(mod.path))
    package = mod.name if mod.path.name == "__init__.py" else mod.name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            target = _known_prefix(name, known)
            if target is not None and target != mod.name:
                yield target, node.lineno
                break


def _known_prefix(name: str, known: dict[str, Module]) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            return candidate
    return None


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def layer_violations(known: dict[str, Module]) -> list[str]:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    out = []
    for mod in known.values():
        for target, line in imports_of(mod, known):
            if rank[known[target].layer] > rank[mod.layer]:
                out.append(f"{_shown(mod.path)}:{line}: {mod.layer} imports {target} (a higher layer)")
    return out


def cycles(known: dict[str, Module]) -> list[list[str]]:
    graph = {name: sorted({t for t, _ in imports_of(mod, known)}) for name, mod in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strongconnect(v)
    return found


def long_modules(known: dict[str, Module]) -> list[str]:
    out = []
    for mod in known.values():
        text = mod.path.read_text()
        n = text.count("\n")
        if n <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if LONG_REASON not in doc:
            out.append(f"{_shown(mod.path)}: {n} lines and no '{LONG_REASON} …' in its docstring")
    return out


def problems() -> list[str]:
    known = modules()
    out = layer_violations(known)
    out += [f"import cycle: {' ↔ '.join(c)}" for c in cycles(known)]
    out += long_modules(known)
    return out


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    print(f"{len(found)} problem(s)" if found else "layers, cycles and module sizes: ok")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
