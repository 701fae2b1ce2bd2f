"""The recipes and their configs after `pip install`: find, list, copy and run them (`textrec run`, `textrec configs`).

The wheel ships the repository's `recipes/` folder as `textrec/recipes/` (see pyproject.toml); in a checkout or an
editable install they are read from `recipes/` beside the package, so `accelerate launch recipes/train.py ...` and
`textrec run train ...` run the same file. Recipes stay scripts: this module finds their files and runs one as
`__main__`, as `python <recipe file>` would; it never imports them.

A recipe runs in the calling process unless launcher options are given: then `accelerate launch <options> <recipe
file> ...` starts it (several processes or GPUs, an `accelerate config` file).
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # the textrec package folder
CONFIG_SUFFIXES = (".yaml", ".yml")


def recipes_dir() -> Path:
    """The folder of the recipe scripts: `textrec/recipes/` when installed from a wheel, else `recipes/` in the
    checkout the package was installed from."""
    for candidate in (_PACKAGE / "recipes", _PACKAGE.parent / "recipes"):
        if (candidate / "train.py").is_file() and (candidate / "configs").is_dir():
            return candidate
    raise FileNotFoundError(f"no recipes beside {_PACKAGE}: reinstall textrec")


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_dir().glob("*.py"))


def recipe_sections(name: str) -> dict:
    """A recipe's config sections (section name -> dataclass), from the library's `RECIPE_SECTIONS`: a shipped
    recipe's name (`train`) or the path of a recipe file named like one (a copy made by `textrec configs cp`)."""
    from textrec.protocols.sections import RECIPE_SECTIONS

    stem = Path(name).stem
    if stem not in RECIPE_SECTIONS:
        raise ValueError(f"unknown recipe {name!r} (known: {', '.join(RECIPE_SECTIONS)})")
    return RECIPE_SECTIONS[stem]


def parse_recipe_args(recipe: str, description: str, argv: Sequence[str] | None = None) -> dict:
    """A recipe's command line, `--config FILE_OR_NAME [section.field=value ...]`, loaded into its sections and
    checked across them (`textrec.protocols.sections.CROSS_CHECKS`). A bad config, override or combination ends the
    process with one line that names the field (printed by the first process only, so `accelerate launch` with
    several processes shows it once), and exit status 2."""
    import argparse

    from textrec.config import config_help, load_config
    from textrec.protocols.sections import CROSS_CHECKS

    sections = recipe_sections(recipe)
    parser = argparse.ArgumentParser(
        description=description, epilog=config_help(sections), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a YAML file, or a shipped config's name (textrec configs)")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(sections, resolve_config(args.config), overrides)
        check = CROSS_CHECKS.get(Path(recipe).stem)
        if check is not None:
            check(cfg)
        return cfg
    except ValueError as err:
        first_process = os.environ.get("RANK", "0") == "0"
        parser.exit(2, f"{parser.prog}: error: {err}\n" if first_process else None)


_NOT_THE_RESULT = ("training.output_dir=", "training.progress=", "training.log_with=", "training.resume=")


def run_label(argv: Sequence[str]) -> str:
    """A recipe run as a reader finds it in the benchmark tables: the config's name and the overrides given
    (`ml100k_minilm training.epochs=3`), less those that change where output goes, not the result."""
    words, config = [], ""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            config = arg.partition("=")[2]
        elif arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif (i == 0 or argv[i - 1] != "--config") and not arg.startswith(_NOT_THE_RESULT):
            words.append(arg)
    stem = Path(config).name.removesuffix(".yaml").removesuffix(".yml")
    return " ".join([stem, *words]) if stem else " ".join(words)


@dataclass(frozen=True)
class ShippedConfig:
    """A config file shipped with the recipes, and the recipe its first line names."""

    name: str
    recipe: str
    path: Path


def shipped_configs() -> list[ShippedConfig]:
    """Every shipped YAML; its recipe is read from its first line, `# Recipe: recipes/<name>.py ...`."""
    out = []
    for path in sorted((recipes_dir() / "configs").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").partition("\n")[0]
        recipe = first.partition("recipes/")[2].partition(".py")[0] if first.startswith("# Recipe:") else ""
        out.append(ShippedConfig(path.stem, recipe, path))
    return out


def resolve_recipe(name: str) -> Path:
    """A shipped recipe by name (`train`), or a recipe file (e.g. one copied with `textrec configs cp train .`)."""
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    if path.name == name and (recipes_dir() / f"{name}.py").is_file():
        return recipes_dir() / f"{name}.py"
    raise ValueError(f"unknown recipe {name!r} (shipped: {', '.join(recipe_names())}; or the path of a .py file)")


def resolve_config(name: str) -> Path:
    """A config file, or a shipped config by name (`synthetic_tiny` or `synthetic_tiny.yaml`)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.name == name:
        shipped = recipes_dir() / "configs" / (name if name.endswith(CONFIG_SUFFIXES) else f"{name}.yaml")
        if shipped.is_file():
            return shipped
    known = ", ".join(c.name for c in shipped_configs())
    raise ValueError(f"config {name!r}: no such file, nor a shipped config (shipped: {known})")


def copy_shipped(name: str, dest: str | Path) -> Path:
    """Copy a shipped config (`ml100k_minilm`) or recipe (`train`) to `dest`: a file, or a folder (an existing one,
    or a path ending in '/'). An existing file is never overwritten."""
    stem = name.removesuffix(".py")
    stem = next((stem.removesuffix(s) for s in CONFIG_SUFFIXES if stem.endswith(s)), stem)
    configs = {c.name: c.path for c in shipped_configs()}
    if stem in configs:
        source = configs[stem]
    elif stem in recipe_names():
        source = recipes_dir() / f"{stem}.py"
    else:
        raise ValueError(f"{name!r} is neither a shipped config nor a recipe (see `textrec configs`)")
    is_folder = Path(dest).is_dir() or str(dest).endswith(("/", os.sep))
    target = Path(dest) / source.name if is_folder else Path(dest)
    if target.exists():
        raise ValueError(f"{target} already exists: not overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def split_run_args(args: Sequence[str]) -> tuple[list[str], str, list[str]]:
    """`[launcher options] RECIPE [recipe arguments]` -> the three parts; RECIPE is the first argument that names a
    shipped recipe or a .py file."""
    names = set(recipe_names())
    for i, arg in enumerate(args):
        if arg in names or (arg.endswith(".py") and not arg.startswith("-")):
            return list(args[:i]), arg, list(args[i + 1 :])
    raise ValueError(f"no recipe given (shipped: {', '.join(sorted(names))}; or the path of a .py file)")


def recipe_argv(args: Sequence[str]) -> list[str]:
    """A recipe's arguments with the value of `--config` resolved to a file (a shipped config's name works)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = str(resolve_config(out[i + 1]))
        elif arg.startswith("--config="):
            out[i] = f"--config={resolve_config(arg.partition('=')[2])}"
    return out


def run_in_process(recipe: str | Path, args: Sequence[str]) -> None:
    """Run a recipe file as `__main__` in this process, as `python <recipe> <args>` would."""
    saved = sys.argv
    sys.argv = [str(recipe), *args]
    try:
        runpy.run_path(str(recipe), run_name="__main__")
    finally:
        sys.argv = saved


def accelerate_command(launcher_args: Sequence[str], recipe: str | Path, args: Sequence[str]) -> list[str]:
    """`accelerate launch --quiet <launcher_args> <recipe> <args>`, through this Python interpreter. `--quiet`: a
    recipe that fails prints its error once (accelerate would otherwise repeat the recipe's stderr inside a
    traceback of its own)."""
    quiet = [] if {"-q", "--quiet"} & set(launcher_args) else ["--quiet"]
    return [sys.executable, "-m", "accelerate.commands.launch", *quiet, *launcher_args, str(recipe), *args]
