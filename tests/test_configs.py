"""Every shipped YAML parses into its recipe's dataclasses; bad keys and values are errors that name the field."""

import importlib.util
import sys
from pathlib import Path

import pytest

from textrec.config import DataConfig, ModelConfig, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


def recipe_sections(name: str) -> dict:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.SECTIONS


def recipe_of(config: Path) -> str:
    """The recipe a YAML belongs to is named in its first comment line: '# Recipe: recipes/<name>.py ...'."""
    first = config.read_text().splitlines()[0]
    assert first.startswith("# Recipe: recipes/"), f"{config.name}: the first line must name its recipe"
    return first.split("recipes/")[1].split(".py")[0]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_shipped_yaml_parses(config):
    sections = recipe_sections(recipe_of(config))
    loaded = load_config(sections, config)
    assert set(loaded) == set(sections)
    assert "accelerate launch" in config.read_text() or "python" in config.read_text()


def test_recipes_is_not_a_package(tmp_path):
    """Recipes are scripts: the installed library never ships or imports them."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", "import recipes"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'recipes'" in proc.stderr
    assert not (ROOT / "recipes" / "__init__.py").exists()


def test_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  format: synthetic\nmodel:\n  dim: 16\n  seq_heads: 2\n")
    cfg = load_config({"data": DataConfig, "model": ModelConfig}, path, ["model.temperature=0.2", "--model.dim", "32"])
    assert cfg["model"].dim == 32 and cfg["model"].temperature == 0.2 and cfg["data"].format == "synthetic"
    with pytest.raises(ValueError, match="unknown key model.dims"):
        load_config({"data": DataConfig, "model": ModelConfig}, path, ["model.dims=3"])
    with pytest.raises(ValueError, match="unknown section 'modle'"):
        load_config({"data": DataConfig, "model": ModelConfig}, path, ["modle.dim=3"])
    with pytest.raises(ValueError, match="model.dim: expected int"):
        load_config({"data": DataConfig, "model": ModelConfig}, path, ["model.dim=big"])
    with pytest.raises(ValueError, match="model.pooling: expected one of"):
        load_config({"data": DataConfig, "model": ModelConfig}, path, ["model.pooling=max"])
    with pytest.raises(ValueError, match="model.id_embedding: must be true"):
        load_config({"data": DataConfig, "model": ModelConfig}, path, ["model.encoder=null"])
    assert parse_overrides(["a.b=[1, 2]", "a.c=true"]) == {"a": {"b": [1, 2], "c": True}}
