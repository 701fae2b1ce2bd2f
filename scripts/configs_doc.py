"""Write docs/configs.md, the reference of every recipe's config sections, from the dataclasses themselves.

    python scripts/configs_doc.py > docs/configs.md

tests/test_configs_doc.py fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from textrec.config import config_markdown

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("train", "incremental_lora", "domain_transfer", "adversarial_fgsm")


def recipe_sections(name: str) -> dict:
    """A recipe's `SECTIONS` (section name -> dataclass), read by loading the recipe file as a module."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.SECTIONS


def markdown() -> str:
    return config_markdown({name: recipe_sections(name) for name in RECIPES})


if __name__ == "__main__":
    sys.stdout.write(markdown())
