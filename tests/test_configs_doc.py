"""Config documentation comes from the dataclasses: every recipe's --help lists every field, and docs/configs.md is
exactly what scripts/configs_doc.py generates."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import run_command

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("train", "incremental_lora", "domain_transfer", "adversarial_fgsm")
REGENERATE = "python scripts/configs_doc.py > docs/configs.md"


def _configs_doc():
    spec = importlib.util.spec_from_file_location("configs_doc", ROOT / "scripts" / "configs_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def configs_doc():
    return _configs_doc()


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_help_lists_every_field(recipe, configs_doc):
    proc = run_command([sys.executable, str(ROOT / "recipes" / f"{recipe}.py"), "--help"], cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "--config" in out and "accelerate launch recipes/" in out  # the usage and the docstring
    for section, cls in configs_doc.recipe_sections(recipe).items():
        assert f"\n{section}: " in out, section
        for f in [f for f in dataclasses.fields(cls) if f.init]:
            assert f"\n  {section}.{f.name}: " in out, f"{section}.{f.name} missing from {recipe}.py --help"
            assert f.metadata.get("help"), f"{section}.{f.name} has no help text"


def test_config_help_shows_type_default_and_help():
    from textrec.config import DataConfig, config_help

    text = config_help({"data": DataConfig})
    assert "\n  data.format: str = recbole\n      recbole | grouplens | tabular | synthetic\n" in text
    assert "\n  data.name: str | None = null\n" in text and "\n  data.columns: dict = {}\n" in text


def test_docs_configs_md_is_generated(configs_doc):
    committed = (ROOT / "docs" / "configs.md").read_text(encoding="utf-8")
    generated = configs_doc.markdown()
    assert committed == generated, f"docs/configs.md is out of date with the config dataclasses: run `{REGENERATE}`"
    for recipe in RECIPES:
        for section, cls in configs_doc.recipe_sections(recipe).items():
            assert f"### `{section}` ({cls.__name__})" in generated
            for f in [f for f in dataclasses.fields(cls) if f.init]:
                assert f"| `{section}.{f.name}` |" in generated
