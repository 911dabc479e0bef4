"""The house rules hold (tests/support/check_layers.py): layers point one way (agentic_core ←
activities ← workflows ← workers), no import cycles, and no module over 500 lines without a
"Long because …" paragraph in its docstring."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import check_layers


def test_layers_cycles_and_module_sizes() -> None:
    assert check_layers.problems() == []


def test_the_check_has_teeth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that imports a higher layer, a cycle, and a long module without a reason are
    all reported."""
    (tmp_path / "a.py").write_text("import workers.b\n")
    (tmp_path / "b.py").write_text('"""A long module."""\nimport agentic_core.a\n' + "x = 1\n" * 600)
    fake = {
        "agentic_core.a": check_layers.Module("agentic_core.a", tmp_path / "a.py"),
        "workers.b": check_layers.Module("workers.b", tmp_path / "b.py"),
    }
    monkeypatch.setattr(check_layers, "modules", lambda: fake)
    found = check_layers.problems()
    assert any("agentic_core imports workers.b (a higher layer)" in p for p in found), found
    assert any(p.startswith("import cycle: agentic_core.a ↔ workers.b") for p in found), found
    assert any("b.py: 602 lines and no 'Long because …'" in p for p in found), found
