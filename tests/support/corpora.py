"""The real alert texts the tests and benchmarks read from ../shared/corpora (never copied into the project)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.env import CORPORA

ALERT_RULES = CORPORA / "awesome-prometheus-alerts" / "rules.yml"


def rule_texts(path: Path = ALERT_RULES) -> list[str]:
    """Every rule of awesome-prometheus-alerts as the generated alerts carry it: the summary and
    description annotations (with their templates), the comments and the query."""
    data = yaml.safe_load(path.read_text())
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "name" in node and "query" in node:
                texts.append(f"{node['name']} (instance {{{{ $labels.instance }}}})")
                texts.append(f"{node.get('description', '')}\n  VALUE = {{{{ $value }}}}\n  LABELS = {{{{ $labels }}}}")
                texts.extend(str(node[k]) for k in ("comments", "query") if node.get(k))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return texts
