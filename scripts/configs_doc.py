"""Write docs/configs.md, the reference of every recipe's config sections, from the dataclasses themselves.

    python scripts/configs_doc.py > docs/configs.md

tests/test_configs_doc.py fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import sys

from textrec.config import config_markdown
from textrec.serve.launch import recipe_sections

RECIPES = ("train", "incremental_lora", "domain_transfer", "adversarial_fgsm")


def markdown() -> str:
    return config_markdown({name: recipe_sections(name) for name in RECIPES})


if __name__ == "__main__":
    sys.stdout.write(markdown())
