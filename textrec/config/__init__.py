"""Configuration (`sections`: the data and model schema; `loading`: YAML and overrides; `docs`: help and
docs/configs.md): dataclasses are the schema, YAML files give values, `section.field=value` overrides them.

A YAML file has one mapping per section (e.g. `data:`, `model:`, `training:`). Unknown sections or keys, duplicate
keys and an empty file are errors, never ignored. Overrides are strings `section.field=value` (or
`--section.field value` pairs), parsed with YAML rules so that `training.lr=1e-3` is a float and
`model.id_embedding=true` a bool; a text field takes the text as written (`data.item_template={title} ({year})`).
"""

from textrec.config.docs import config_help, config_markdown
from textrec.config.loading import config_to_dict, load_config, parse_overrides
from textrec.config.sections import DataConfig, ModelConfig

__all__ = [
    "DataConfig",
    "ModelConfig",
    "config_help",
    "config_markdown",
    "config_to_dict",
    "load_config",
    "parse_overrides",
]
