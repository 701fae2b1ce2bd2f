"""A recipe's `--help` and docs/configs.md, written from the config dataclasses (type, default and help of every
field)."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping

import yaml


def _fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _type_name(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _default_text(f: dataclasses.Field) -> str:
    """A field's default as it would be written in YAML (`null`, `true`, `[]`, `'{title}'`), or `required`."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def _summary(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def config_help(sections: Mapping[str, type]) -> str:
    """Every field of every section with its type, default and help text: a recipe's `--help` epilog."""
    lines = ["config fields (set in the YAML file, or override as section.field=value / --section.field value):"]
    for section, cls in sections.items():
        lines += ["", textwrap.fill(f"{section}: {_summary(cls)}", 116, subsequent_indent="  ")]
        for f in _fields(cls):
            lines.append(f"  {section}.{f.name}: {_type_name(f)} = {_default_text(f)}")
            help_text = f.metadata.get("help", "")
            if help_text:
                lines.append(textwrap.fill(help_text, 116, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _prose(text: str) -> str:
    """Text as Markdown prose: `<name>` would otherwise be read as an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def config_markdown(recipes: Mapping[str, Mapping[str, type]]) -> str:
    """docs/configs.md: per recipe (name -> its sections), a table of every section's fields with type, default and
    help. A section class shared by several recipes is documented once and linked from the others."""
    lines = [
        "# Recipe configuration reference",
        "",
        "Generated from the config dataclasses by `python scripts/configs_doc.py > docs/configs.md`; do not edit by",
        "hand. Every field is set in a recipe's YAML file (`recipes/configs/`) or overridden on the command line as",
        "`section.field=value` (or `--section.field value`); unknown keys are errors. `python recipes/<recipe>.py",
        "--help` and `textrec run <recipe> --help` print the same.",
    ]
    documented: dict[type, tuple[str, str]] = {}  # section class -> (where it is documented, its anchor)
    for recipe, sections in recipes.items():
        lines += ["", f"## recipes/{recipe}.py", ""]
        lines += [f"Sections: {', '.join(f'`{name}`' for name in sections)}."]
        for section, cls in sections.items():
            anchor = f"{recipe}-{section}".replace("_", "-")
            lines += ["", f'<a id="{anchor}"></a>', f"### `{section}` ({cls.__name__})", ""]
            if cls in documented:
                where, target = documented[cls]
                lines.append(f"The same fields as [{where}](#{target}).")
                continue
            documented[cls] = (f"`{section}` of recipes/{recipe}.py", anchor)
            lines += [_prose(_summary(cls)), "", "| field | type | default | help |", "|---|---|---|---|"]
            for f in _fields(cls):
                cells = [
                    f"`{section}.{f.name}`",
                    f"`{_type_name(f)}`",
                    f"`{_default_text(f)}`",
                    _prose(f.metadata.get("help", "")),
                ]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
