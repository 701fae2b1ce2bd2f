"""Loading a recipe's config: dataclasses are the schema, YAML files give values, `section.field=value` overrides
them.

A YAML file has one mapping per section (e.g. `data:`, `model:`, `training:`). Unknown sections or keys, duplicate
keys and an empty file are errors, never ignored. Overrides are strings `section.field=value` (or
`--section.field value` pairs), parsed with YAML rules so that `training.lr=1e-3` is a float and
`model.id_embedding=true` a bool; a text field takes the text as written (`data.item_template={title} ({year})`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml


def _coerce(value, annotation, where: str):
    """Check a YAML value against a dataclass field annotation (str, int, float, bool, list, dict, X | None)."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = args[0]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    base = typing.get_origin(hint) or hint
    if base is typing.Any or (isinstance(base, type) and isinstance(value, base)):
        if base is int and isinstance(value, bool):
            raise ValueError(f"{where}: expected int, got {value!r}")
        return value
    raise ValueError(f"{where}: expected {getattr(base, '__name__', base)}, got {value!r}")


def parse_overrides(args: Sequence[str]) -> dict[str, dict]:
    """`section.field=value` or `--section.field value` -> {section: {field: text}}; `load_config` reads each text
    as its field's type."""
    out: dict[str, dict] = {}
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg.startswith("--") and "=" not in arg:
            if i + 1 >= len(items):
                raise ValueError(f"override {arg}: missing a value")
            key, value = arg[2:], items[i + 1]
            i += 2
        else:
            key, sep, value = arg.lstrip("-").partition("=")
            if not sep:
                raise ValueError(f"override {arg!r}: expected section.field=value")
            i += 1
        section, dot, name = key.partition(".")
        if not dot:
            raise ValueError(f"override {arg!r}: expected section.field=value")
        out.setdefault(section, {})[name.replace("-", "_")] = value
    return out


def _override_value(raw: str, annotation, where: str):
    """An override's text as the field's type: text fields take it as written, others are parsed as YAML."""
    hint = annotation
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if raw in ("null", "None", "~"):
            return None
        hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
    if hint is str:
        return raw
    if raw == "":
        raise ValueError(f"{where}: empty value")
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: cannot read {raw!r} ({str(err).splitlines()[0]})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if raw is None:
        raise ValueError(f"{path}: the file is empty (give at least one section)")
    return raw


def load_config(
    sections: Mapping[str, type], path: str | Path | None = None, overrides: Sequence[str] = ()
) -> dict[str, object]:
    """Build one dataclass instance per section from a YAML file plus overrides; unknown keys are errors."""
    raw: dict = {}
    where = path or "config"
    if path is not None:
        raw = _read_yaml(path)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of sections {sorted(sections)}")
    for section, values in raw.items():
        if values is not None and not isinstance(values, dict):
            raise ValueError(f"{where}: section {section!r} must be a mapping of fields, got {values!r}")
    for section, values in parse_overrides(overrides).items():
        if section not in sections:
            raise ValueError(f"override {section}.*: unknown section {section!r} (known: {sorted(sections)})")
        hints = typing.get_type_hints(sections[section])
        bad = sorted(set(values) - set(hints))
        if bad:
            raise ValueError(f"override: unknown key {section}.{bad[0]} (known: {sorted(hints)})")
        parsed = {k: _override_value(v, hints[k], f"{section}.{k}") for k, v in values.items()}
        raw[section] = {**(raw.get(section) or {}), **parsed}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"{where}: unknown section {unknown[0]!r} (known: {sorted(sections)})")
    out = {}
    for section, cls in sections.items():
        values = raw.get(section) or {}
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - fields)
        if bad:
            raise ValueError(f"{where}: unknown key {section}.{bad[0]} (known: {sorted(fields)})")
        kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
        out[section] = cls(**kwargs)
    return out


def config_to_dict(configs: Mapping[str, object]) -> dict:
    return {name: dataclasses.asdict(cfg) for name, cfg in configs.items()}
