"""A file's structure through real parsers: the standard `ast` for Python, tree-sitter with its
per-language wheels for YAML, Go, HCL/Terraform, Bash, JSON and Dockerfiles (the grammars ship
in the wheels: nothing is downloaded at run time).

`symbols(path, text)` lists what a file defines: Python classes, functions, methods and
module-level names (qualified, `Class.method`); Go functions, methods, types; Terraform blocks
(`resource.aws_instance.web`, `variable.region`, `module.vpc`, `output.x`, `local.y`); Bash
functions and variables; Dockerfile stages, ARGs and ENVs; YAML and JSON keys as dotted paths
(`resources.limits.memory`, `containers[0].image`). `references(path, text, name)` lists where an
identifier occurs (Python: names, attributes, imports; others: the parser's identifier, key and
word tokens equal to it).
"""

from __future__ import annotations

import ast
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any

import tree_sitter as ts

LANGUAGES = ("python", "yaml", "go", "hcl", "bash", "json", "dockerfile")


@dataclass(frozen=True)
class Symbol:
    name: str  # qualified: Class.method, resources.limits.memory, resource.aws_instance.web
    kind: str
    line: int  # 1-based
    end_line: int


@dataclass(frozen=True)
class Occurrence:
    line: int
    column: int  # 1-based
    text: str  # the source line, cut
    definition: bool


def language_of(path: str, head: str = "") -> str | None:
    """The language of `path` (by name, or a shell script by its `#!` line), or None."""
    p = PurePosixPath(path)
    name, suffix = p.name.lower(), p.suffix.lower()
    if suffix in (".py", ".pyi"):
        return "python"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".go":
        return "go"
    if suffix in (".tf", ".hcl", ".tfvars"):
        return "hcl"
    if suffix in (".sh", ".bash"):
        return "bash"
    if suffix == ".json":
        return "json"
    if name == "dockerfile" or name.startswith("dockerfile.") or suffix == ".dockerfile":
        return "dockerfile"
    if head.startswith("#!") and ("sh" in head.split("\n", 1)[0].rsplit("/", 1)[-1]):
        return "bash"
    return None


@cache
def parser(language: str) -> ts.Parser:
    """The tree-sitter parser of `language` (from its wheel)."""
    import importlib

    module = importlib.import_module(f"tree_sitter_{language}")
    with warnings.catch_warnings():  # older grammar wheels hand over an int, not a capsule
        warnings.simplefilter("ignore", DeprecationWarning)
        lang = ts.Language(module.language())
    return ts.Parser(lang)


_TREES: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
_TREES_MAX = 2048


def _cached(kind: str, text: str, make: Callable[[], Any]) -> Any:
    """A parse of `text` (`kind`: the language), kept for the next query of the same text."""
    key = (kind, len(text), hash(text))
    if key in _TREES:
        _TREES.move_to_end(key)
        return _TREES[key]
    value = make()
    _TREES[key] = value
    if len(_TREES) > _TREES_MAX:
        _TREES.popitem(last=False)
    return value


def parse(language: str, text: str) -> ts.Tree:
    return _cached(language, text, lambda: parser(language).parse(text.encode("utf-8")))


def _txt(node: ts.Node | None) -> str:
    return node.text.decode("utf-8", errors="replace") if node is not None and node.text is not None else ""


def _sym(name: str, kind: str, node: ts.Node) -> Symbol:
    return Symbol(name=name, kind=kind, line=node.start_point[0] + 1, end_line=node.end_point[0] + 1)


# --------------------------------------------------------------------------- Python (ast)


def _python_ast(text: str) -> ast.Module:
    return _cached("python", text, lambda: ast.parse(text))  # type: ignore[no-any-return]


def _python_symbols(text: str) -> list[Symbol]:
    try:
        tree = _python_ast(text)
    except SyntaxError as exc:
        raise ValueError(f"Python syntax error at line {exc.lineno}: {exc.msg}") from None
    out: list[Symbol] = []

    def visit(body: list[ast.stmt], prefix: str, in_class: bool) -> None:
        for node in body:
            end = getattr(node, "end_lineno", None) or node.lineno
            if isinstance(node, ast.ClassDef):
                out.append(Symbol(prefix + node.name, "class", node.lineno, end))
                visit(node.body, f"{prefix}{node.name}.", True)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append(Symbol(prefix + node.name, "method" if in_class else "function", node.lineno, end))
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for name in _assigned(t):
                        out.append(Symbol(prefix + name, "attribute" if in_class else "variable", node.lineno, end))

    visit(tree.body, "", False)
    return out


def _assigned(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            yield from _assigned(elt)


Index = dict[str, list[tuple[int, int, bool]]]  # identifier -> (line, column, is a definition)


def _python_index(text: str) -> Index:
    """Every identifier of a Python file and where it occurs (one walk, kept with the parse)."""

    def build() -> Index:
        out: Index = {}

        def add(name: str, line: int, col: int, definition: bool) -> None:
            out.setdefault(name, []).append((line, col, definition))

        for node in ast.walk(_python_ast(text)):
            if isinstance(node, ast.Name):
                add(node.id, node.lineno, node.col_offset + 1, isinstance(node.ctx, ast.Store))
            elif isinstance(node, ast.Attribute):  # the attribute's name is at the end of the node
                end = (node.end_col_offset or 0) - len(node.attr) + 1
                add(node.attr, node.end_lineno or node.lineno, end, isinstance(node.ctx, ast.Store))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                add(node.name, node.lineno, node.col_offset + 1, True)
            elif isinstance(node, ast.alias):
                add((node.asname or node.name).split(".")[-1], node.lineno, node.col_offset + 1, False)
            elif isinstance(node, ast.arg):
                add(node.arg, node.lineno, node.col_offset + 1, True)
            elif isinstance(node, ast.keyword) and node.arg:
                add(node.arg, node.lineno, node.col_offset + 1, False)
        return {k: sorted(set(v)) for k, v in out.items()}

    return _cached("python-index", text, build)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- tree-sitter


def _yaml_key(node: ts.Node) -> str:
    key = node.child_by_field_name("key")
    return _txt(key).strip().strip("\"'")


def _yaml_symbols(root: ts.Node) -> list[Symbol]:
    out: list[Symbol] = []

    def walk(node: ts.Node, path: str) -> None:
        if node.type in ("block_mapping_pair", "flow_pair", "pair"):
            key = _yaml_key(node) if node.type != "pair" else _txt(node.child_by_field_name("key")).strip('"')
            key = f'"{key}"' if "." in key else key  # a dotted key is quoted in the path
            full = f"{path}.{key}" if path else key
            out.append(_sym(full, "key", node))
            value = node.child_by_field_name("value")
            if value is not None:
                walk(value, full)
            return
        if node.type in ("block_sequence", "flow_sequence", "array"):
            items = [c for c in node.named_children if c.type not in ("comment",)]
            for i, item in enumerate(items):
                walk(item, f"{path}[{i}]")
            return
        if node.type == "document" and path == "" and node.parent is not None:
            docs = [c for c in node.parent.named_children if c.type == "document"]
            prefix = f"---{docs.index(node)}:" if len(docs) > 1 and docs.index(node) > 0 else ""
            for c in node.named_children:
                walk(c, prefix.rstrip(":") if prefix else "")
            return
        for c in node.named_children:
            walk(c, path)

    walk(root, "")
    return out


def _hcl_symbols(root: ts.Node) -> list[Symbol]:
    out: list[Symbol] = []

    def walk(body: ts.Node, prefix: str) -> None:
        for node in body.named_children:
            if node.type == "block":
                kids = node.named_children
                kind = _txt(kids[0]) if kids else "block"
                labels = [_txt(k).strip('"') for k in kids[1:] if k.type in ("string_lit", "identifier")]
                if kind == "locals":
                    inner = next((k for k in kids if k.type == "body"), None)
                    for attr in inner.named_children if inner is not None else []:
                        if attr.type == "attribute":
                            out.append(_sym(f"local.{_txt(attr.named_children[0])}", "local", attr))
                    continue
                name = ".".join([kind, *labels]) if prefix == "" else f"{prefix}.{'.'.join([kind, *labels])}"
                out.append(_sym(name, kind, node))
                inner = next((k for k in kids if k.type == "body"), None)
                if inner is not None:
                    walk(inner, name)
            elif node.type == "attribute" and prefix == "":
                out.append(_sym(_txt(node.named_children[0]), "attribute", node))
            elif node.type == "body":
                walk(node, prefix)

    walk(root, "")
    return out


def _go_symbols(root: ts.Node) -> list[Symbol]:
    out: list[Symbol] = []
    for node in root.named_children:
        if node.type == "function_declaration":
            out.append(_sym(_txt(node.child_by_field_name("name")), "function", node))
        elif node.type == "method_declaration":
            recv = node.child_by_field_name("receiver")
            rtype = ""
            for t in _descendants(recv, ("type_identifier",)) if recv is not None else []:
                rtype = _txt(t)
            name = _txt(node.child_by_field_name("name"))
            out.append(_sym(f"{rtype}.{name}" if rtype else name, "method", node))
        elif node.type == "type_declaration":
            for spec in node.named_children:
                if spec.type in ("type_spec", "type_alias"):
                    out.append(_sym(_txt(spec.child_by_field_name("name")), "type", spec))
        elif node.type in ("const_declaration", "var_declaration"):
            for spec in _descendants(node, ("const_spec", "var_spec")):
                for n in spec.children_by_field_name("name"):
                    out.append(_sym(_txt(n), node.type.split("_")[0], spec))
    return out


def _bash_symbols(root: ts.Node) -> list[Symbol]:
    out: list[Symbol] = []
    for node in _descendants(root, ("function_definition", "variable_assignment")):
        if node.type == "function_definition":
            out.append(_sym(_txt(node.child_by_field_name("name")), "function", node))
        elif node.parent is not None and node.parent.type in ("program", "declaration_command"):
            out.append(_sym(_txt(node.child_by_field_name("name")), "variable", node))
    return out


def _dockerfile_symbols(root: ts.Node) -> list[Symbol]:
    out: list[Symbol] = []
    for node in root.named_children:
        if node.type == "from_instruction":
            alias = node.child_by_field_name("as")
            image = _txt(node.child_by_field_name("image") or next(iter(node.named_children), None))
            out.append(_sym(_txt(alias) if alias is not None else image, "stage", node))
        elif node.type == "arg_instruction":
            out.append(_sym(_txt(node.child_by_field_name("name")), "arg", node))
        elif node.type == "env_instruction":
            for pair in node.named_children:
                if pair.type == "env_pair":
                    out.append(_sym(_txt(pair.child_by_field_name("name")), "env", pair))
    return out


def _descendants(node: ts.Node, types: tuple[str, ...]) -> Iterator[ts.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type in types:
            yield n
        stack.extend(reversed(n.named_children))


_TS_SYMBOLS: dict[str, Callable[[ts.Node], list[Symbol]]] = {
    "yaml": _yaml_symbols,
    "json": _yaml_symbols,
    "hcl": _hcl_symbols,
    "go": _go_symbols,
    "bash": _bash_symbols,
    "dockerfile": _dockerfile_symbols,
}
_WORDS = {
    "identifier",
    "field_identifier",
    "type_identifier",
    "package_identifier",
    "word",
    "variable_name",
    "string_scalar",
    "string_content",
    "template_literal",
    "unquoted_string",
    "image_alias",
    "image_name",
}


def symbols(path: str, text: str) -> list[Symbol]:
    """What `path` defines (see the module doc); a file of no known language has none."""
    lang = language_of(path, text[:200])
    if lang is None:
        return []
    if lang == "python":
        return _python_symbols(text)
    return _TS_SYMBOLS[lang](parse(lang, text).root_node)


def references(path: str, text: str, name: str) -> list[Occurrence]:
    """Where the identifier `name` occurs in `path` (definitions marked)."""
    lang = language_of(path, text[:200])
    if lang is None:
        return []
    lines = text.splitlines()

    def occ(line: int, col: int, definition: bool) -> Occurrence:
        src = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return Occurrence(line=line, column=col, text=src[:200], definition=definition)

    try:
        index = _python_index(text) if lang == "python" else _ts_index(lang, text)
    except SyntaxError:
        return []
    return [occ(ln, col, d) for ln, col, d in index.get(name, [])]


def _ts_index(lang: str, text: str) -> Index:
    """Every identifier-like token (names, keys, words) of a file and where it occurs; a token on
    the line of a symbol of that name counts as its definition."""

    def build() -> Index:
        root = parse(lang, text).root_node
        defined: dict[str, set[int]] = {}
        for sym in _TS_SYMBOLS[lang](root):
            defined.setdefault(sym.name.rsplit(".", 1)[-1].strip('"'), set()).add(sym.line)
        out: Index = {}
        stack: list[Any] = [root]
        while stack:
            node = stack.pop()
            if node.type in _WORDS:
                word = _txt(node).strip("\"'")
                line = node.start_point[0] + 1
                out.setdefault(word, []).append((line, node.start_point[1] + 1, line in defined.get(word, ())))
                continue
            stack.extend(node.children)
        return {k: sorted(v) for k, v in out.items()}

    return _cached(f"{lang}-index", text, build)  # type: ignore[no-any-return]
