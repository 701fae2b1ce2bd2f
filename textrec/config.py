"""Configuration: dataclasses are the schema, YAML files give values, `section.field=value` overrides them.

A YAML file has one mapping per section (e.g. `data:`, `model:`, `training:`). Unknown sections or keys, duplicate
keys and an empty file are errors, never ignored. Overrides are strings `section.field=value` (or
`--section.field value` pairs), parsed with YAML rules so that `training.lr=1e-3` is a float and
`model.id_embedding=true` a bool; a text field takes the text as written (`data.item_template={title} ({year})`).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml


def _help(text: str, default=dataclasses.MISSING, **kw):
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


@dataclass
class DataConfig:
    """Which interactions and items to read, and how to render item text."""

    format: str = _help("recbole | grouplens | tabular | synthetic", "recbole")
    path: str = _help(
        "folder of the data (recbole: holds <name>.inter/.item) or the interactions file", "data/ml-100k"
    )
    name: str | None = _help("recbole dataset name (default: the folder name)", None)
    items_path: str | None = _help("tabular only: the item catalogue file", None)
    columns: dict = _help(
        "tabular only: textrec field -> interaction file column (user_id, item_id, timestamp, rating)", {}
    )
    item_columns: dict = _help("tabular only: {'item_id': <item file column>}", {})
    item_template: str | None = _help("str.format template over item fields; None = a default for the fields", None)
    synthetic_users: int = _help("synthetic only: number of users", 200)
    synthetic_items: int = _help("synthetic only: number of items", 120)
    synthetic_drift: float = _help("synthetic only: per-interaction chance that a user's taste moves", 0.0)
    synthetic_shift_at: float | None = _help("synthetic only: share of the stream where behaviour changes", None)
    synthetic_drift_after: float = _help("synthetic only: the drift after synthetic_shift_at", 1.0)
    seed: int = _help("seed of the synthetic generator", 0)

    def __post_init__(self):
        if self.format not in ("recbole", "grouplens", "tabular", "synthetic"):
            raise ValueError(f"data.format: expected recbole, grouplens, tabular or synthetic, got {self.format!r}")
        if self.format == "tabular" and not self.items_path:
            raise ValueError("data.items_path: required when data.format is 'tabular'")
        for name in ("synthetic_users", "synthetic_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("synthetic_drift", "synthetic_drift_after"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"data.{name}: must be in [0, 1], got {getattr(self, name)}")


@dataclass
class ModelConfig:
    """The towers: encoder, pooling, LoRA, user tower and scoring."""

    encoder: str | None = _help(
        "text encoder: minilm | smollm2-135m | a Hub id | a local folder; null = ID-only", "minilm"
    )
    revision: str | None = _help("revision of a Hub encoder (recorded in the artifact)", None)
    pooling: str = _help("auto | cls | mean | last (auto: last for decoder-only models, mean otherwise)", "auto")
    max_item_tokens: int = _help("item text is truncated to this many tokens", 32)
    user_tower: str = _help(
        "sequence (transformer over history item vectors) | text (history rendered as text)", "sequence"
    )
    share_encoder: bool = _help("text user tower: share the item tower's encoder and adapter", True)
    history_text_items: int = _help("text user tower: how many recent items are rendered", 10)
    max_history_tokens: int = _help("text user tower: history text is truncated (oldest first) to this", 256)
    id_embedding: bool = _help(
        "add a learned per-item id embedding to the item vector (ID-only if encoder=null)", False
    )
    dim: int = _help("dimension of item and user vectors", 64)
    similarity: str = _help("cosine | dot", "cosine")
    temperature: float = _help("scores are similarity / temperature (the initial value if learned)", 0.05)
    learn_temperature: bool = _help("learn the temperature (as its log, floored at 0.01) with the heads", False)
    item_bias: bool = _help(
        "a learned per-item logit bias (popularity) beside the vector direction; new items get 0", False
    )
    id_dropout: float = _help(
        "text + id towers: each training step treats this share of items as new (no id part, no bias), so that "
        "items added later by text alone are served by a part the model trained",
        0.0,
    )
    text_loss_weight: float = _help(
        "text + id towers: weight of an auxiliary loss that ranks the targets with text-only item vectors", 0.0
    )
    user_content: int = _help(
        "sequence user tower: add the unit-length mean of the last N history item vectors (learned scale), a "
        "content path that carries over to new items and catalogues; 0 = off",
        0,
    )
    encoder_dropout: float | None = _help(
        "dropout inside the base encoder while training (null = the encoder's own, 0.1 for MiniLM); 0 makes live "
        "item vectors match the cached, eval-mode ones they compete with in one softmax",
        0.0,
    )
    max_history: int = _help("sequence user tower: the last N history items are read", 50)
    seq_layers: int = _help("sequence user tower: transformer layers", 2)
    seq_heads: int = _help("sequence user tower: attention heads", 2)
    seq_dropout: float = _help("sequence user tower: dropout", 0.2)
    seq_position_std: float | None = _help(
        "sequence user tower: init std of the position embeddings (0.02 as in BERT / GPT-2; null: torch's N(0, 1), "
        "the default before 2026-11-25, whose norm of about sqrt(dim) swamps item vectors of norm about 1 at the "
        "input: ML-1M ID-only stayed at the popularity level with it)",
        0.02,
    )
    train_mode: str = _help("encoder training: lora | frozen | full | top_layers", "lora")
    top_layers: int = _help("train_mode=top_layers: how many top layers train", 2)
    lora_r: int = _help("LoRA rank", 8)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r)", 16)
    lora_dropout: float = _help("LoRA dropout", 0.05)
    lora_target_modules: list | None = _help("LoRA target modules; null = peft's default for the architecture", None)

    def __post_init__(self):
        checks = {
            "pooling": ("auto", "cls", "mean", "last"),
            "user_tower": ("sequence", "text"),
            "similarity": ("cosine", "dot"),
            "train_mode": ("lora", "frozen", "full", "top_layers"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"model.{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.encoder in (None, "", "none"):
            self.encoder = None
            if not self.id_embedding:
                raise ValueError("model.id_embedding: must be true when model.encoder is null (ID-only model)")
            if self.user_tower == "text":
                raise ValueError("model.user_tower: 'text' needs a model.encoder")
        for name in ("dim", "max_history", "max_item_tokens", "seq_layers", "seq_heads", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"model.temperature: must be a finite number > 0, got {self.temperature}")
        if self.encoder_dropout is not None and not 0 <= self.encoder_dropout < 1:
            raise ValueError(f"model.encoder_dropout: must be in [0, 1) or null, got {self.encoder_dropout}")
        if not 0 <= self.id_dropout < 1:
            raise ValueError(f"model.id_dropout: must be in [0, 1), got {self.id_dropout}")
        if self.text_loss_weight < 0 or self.user_content < 0:
            raise ValueError("model.text_loss_weight and model.user_content: must be >= 0")
        if (self.id_dropout or self.text_loss_weight) and not (self.encoder and self.id_embedding):
            raise ValueError("model.id_dropout / model.text_loss_weight: need model.encoder and model.id_embedding")
        if self.user_content and self.user_tower != "sequence":
            raise ValueError("model.user_content: needs model.user_tower 'sequence'")
        for name in ("seq_dropout", "lora_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.seq_position_std is not None and not (
            math.isfinite(self.seq_position_std) and self.seq_position_std > 0
        ):
            raise ValueError(
                f"model.seq_position_std: must be a finite number > 0 or null, got {self.seq_position_std}"
            )
        if self.dim % self.seq_heads:
            raise ValueError(f"model.seq_heads: must divide model.dim ({self.dim}), got {self.seq_heads}")


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Documentation: a recipe's --help and docs/configs.md, from the dataclasses
# ---------------------------------------------------------------------------------------------------------------


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
