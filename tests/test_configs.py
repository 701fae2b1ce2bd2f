"""Every shipped YAML parses into its recipe's dataclasses; bad keys and values are errors that name the field."""

import sys
from pathlib import Path

import pytest

from textrec.config import DataConfig, ModelConfig, load_config, parse_overrides
from textrec.serve.launch import recipe_sections

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


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
    assert parse_overrides(["a.b=[1, 2]", "a.c=true"]) == {"a": {"b": "[1, 2]", "c": "true"}}  # typed on load


SECTIONS = {"data": DataConfig, "model": ModelConfig}


def _yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_values_are_read_as_their_field_types(tmp_path):
    from textrec.train.loop import LoopConfig

    path = _yaml(tmp_path, "training:\n  lr: 1e-3\n  encoder_lr: 2.5e-4\n")  # YAML 1.1 reads these as text
    cfg = load_config({"training": LoopConfig}, path, ["training.weight_decay=1e-2"])["training"]
    assert (cfg.lr, cfg.encoder_lr, cfg.weight_decay) == (1e-3, 2.5e-4, 1e-2)
    template = "data.item_template={movie_title} ({release_year})"  # a YAML flow mapping if parsed as YAML
    cfg = load_config(SECTIONS, _yaml(tmp_path, "data:\n  format: synthetic\n"), [template])
    assert cfg["data"].item_template == "{movie_title} ({release_year})"
    assert load_config(SECTIONS, None, ["model.encoder=null", "model.id_embedding=true"])["model"].encoder is None


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("", [], "the file is empty"),
        ("data:\n  format: synthetic\n  format: recbole\n", [], "line 3: key 'format' is given twice"),
        ("data: 5\n", [], "section 'data' must be a mapping"),
        ("data: [format]\n", [], "section 'data' must be a mapping"),
        ("data: {format: synthetic}\n", ["data.synthetic_users=-3"], "data.synthetic_users: must be >= 1"),
        ("data: {format: synthetic}\n", ["model.temperature=.nan"], "model.temperature: must be a finite"),
        ("data: {format: synthetic}\n", ["model.dim=[1"], "model.dim: cannot read"),
        ("data: {format: synthetic}\n", ["modle.dim=3"], "unknown section 'modle'"),
        ("data: {format: synthetic\n", [], "not valid YAML"),
    ],
)
def test_bad_config_files_and_overrides_name_the_place(tmp_path, text, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(SECTIONS, _yaml(tmp_path, text), overrides)


@pytest.mark.parametrize("value", ["-0.1", ".nan", ".inf"])
def test_training_rejects_negative_or_non_finite_learning_rates(value):
    from textrec.train.loop import LoopConfig

    with pytest.raises(ValueError, match="training.lr: must be a finite number >= 0"):
        load_config({"training": LoopConfig}, None, [f"training.lr={value}"])


# ----- the recipes' sections: the library's dataclasses, one declaration and one default per loop option -----
RECIPES = ("train", "incremental_lora", "domain_transfer", "adversarial_fgsm")
# Names that two recipes' own sections declare on purpose with different defaults.
PER_RECIPE = {
    "output_dir": "each recipe writes to its own folder",
    "cold_item_fraction": "E1-cold is off in a plain training run; E3 always holds 10% of the target items out",
}


def _every_section():
    import dataclasses

    for recipe in RECIPES:
        for section, cls in recipe_sections(recipe).items():
            yield recipe, section, cls, {f.name: f for f in dataclasses.fields(cls)}


def _default(f):
    import dataclasses

    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def test_every_recipe_trains_through_the_library_loop_section():
    from textrec.train.config import LoopConfig

    for recipe in RECIPES:
        assert issubclass(recipe_sections(recipe)["training"], LoopConfig), recipe
        source = (ROOT / "recipes" / f"{recipe}.py").read_text()
        # the precision (bf16 / fp16) and the rest of the loop reach the Accelerator from the training section
        assert "make_accelerator(training" in source or "make_accelerator(train_cfg" in source, recipe
        assert "@dataclass" not in source, f"{recipe}: its sections belong in textrec.protocols.sections"
        loaded = load_config(recipe_sections(recipe), None, ["training.mixed_precision=bf16"])
        assert loaded["training"].mixed_precision == "bf16"


def test_no_recipe_section_redeclares_a_loop_option():
    import dataclasses

    from textrec.train.config import LoopConfig

    loop_fields = {f.name for f in dataclasses.fields(LoopConfig)}
    redeclared = [
        f"{recipe}.{section}.{name}"
        for recipe, section, cls, fields in _every_section()
        if section not in ("data", "model") and not issubclass(cls, LoopConfig)  # data.seed: the synthetic data's
        for name in fields
        if name in loop_fields
    ]
    assert redeclared == []


def test_a_field_shared_by_recipes_has_one_default():
    defaults: dict[str, dict] = {}
    for recipe, section, _, fields in _every_section():
        for name, f in fields.items():
            defaults.setdefault((section, name) if section in ("data", "model") else name, {})[
                f"{recipe}.{section}"
            ] = _default(f)
    clashes = {
        name: where
        for name, where in defaults.items()
        if name not in PER_RECIPE and len({repr(v) for v in where.values()}) > 1
    }
    assert clashes == {}


def test_the_library_never_reads_a_recipe_file(monkeypatch):
    """Sections come from textrec.protocols.sections: loading them opens no recipe file."""
    import builtins

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    for recipe in RECIPES:
        recipe_sections(recipe)
        recipe_sections(str(ROOT / "recipes" / f"{recipe}.py"))  # a copied recipe file: its name decides
    assert not [f for f in opened if f.endswith(".py")]
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipe_sections("nope")


def test_a_bad_override_is_one_line_and_exit_status_2(capsys, monkeypatch):
    from textrec.serve.launch import parse_recipe_args

    with pytest.raises(SystemExit) as stop:
        parse_recipe_args("train", "doc", ["--config", "synthetic_tiny", "modle.dim=3"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unknown section 'modle'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("RANK", "1")  # the other processes of `accelerate launch` stay quiet
    with pytest.raises(SystemExit):
        parse_recipe_args("train", "doc", ["--config", "synthetic_tiny", "modle.dim=3"])
    assert capsys.readouterr().err == ""


# ----- checks across a recipe's sections (textrec.protocols.sections.CROSS_CHECKS), run by parse_recipe_args -----
@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("fgsm_synthetic_tiny", ["model.encoder=tiny", "model.train_mode=lora"], "model.train_mode: adversarial"),
        ("fgsm_synthetic_tiny", ["adversarial.attack_on=[tokens]"], "adversarial.attack_on / adversarial.train_on"),
        ("transfer_synthetic_tiny", ["model.id_embedding=true"], "model.encoder / model.id_embedding"),
    ],
)
def test_a_bad_combination_of_sections_is_one_line_and_exit_status_2(capsys, config, overrides, message):
    from textrec.protocols.sections import CROSS_CHECKS
    from textrec.serve.launch import parse_recipe_args

    recipe = recipe_of(ROOT / "recipes" / "configs" / f"{config}.yaml")
    sections = load_config(recipe_sections(recipe), ROOT / "recipes" / "configs" / f"{config}.yaml", overrides)
    with pytest.raises(ValueError, match=message):  # each section alone is valid: only the combination is not
        CROSS_CHECKS[recipe](sections)
    with pytest.raises(SystemExit) as stop:
        parse_recipe_args(recipe, "doc", ["--config", config, *overrides])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _header_overrides(config: Path, recipe: str) -> list[str]:
    """The overrides of the launch command in a YAML's header (`model.encoder=<tiny model dir>` -> `...=tiny`)."""
    import re

    line = next(line for line in config.read_text().splitlines() if f"recipes/{recipe}.py --config" in line)
    rest = line.partition(config.name)[2]
    return [
        f"{key}={'tiny' if value.startswith('<') else value}"
        for key, value in re.findall(r"(\S+)=(<[^>]*>|\S+)", rest)
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_shipped_yaml_passes_its_recipes_cross_checks(config):
    """Launched as its header says, every shipped YAML passes the checks across its recipe's sections."""
    from textrec.protocols.sections import CROSS_CHECKS, RECIPE_SECTIONS

    assert set(CROSS_CHECKS) <= set(RECIPE_SECTIONS)
    recipe = recipe_of(config)
    loaded = load_config(recipe_sections(recipe), config, _header_overrides(config, recipe))
    if recipe in CROSS_CHECKS:
        CROSS_CHECKS[recipe](loaded)
