"""The saved model folder: an HF/PEFT-compatible folder holding adapters and small heads, never the frozen base
encoder; writing it atomically and reading it back.

Layout of a saved model folder:

    config.json                    textrec format version, model config, base encoder (name, Hub id, the exact
                                   revision loaded: commit or offline package==version, shape, weights sha256)
    adapter_config.json            the item tower's LoRA adapter (peft format: `PeftModel.from_pretrained(base, dir)`)
    adapter_model.safetensors
    user_adapter/                  the user tower's adapter, only when towers do not share an encoder
    textrec_weights.safetensors    every other trained weight: projections, id embeddings, sequence tower, heads
    item_ids.json                  item id of each id-embedding row (the training catalogue order)
    tokenizer files, README.md     the model card

Writes go to a temporary folder that replaces the target in one rename, so a crash never leaves half a folder.
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from textrec.config import ModelConfig
from textrec.files import atomic_dir
from textrec.model.base_encoder import base_record, check_base, load_base, save_adapter
from textrec.model.card import is_generated_card, model_card

FORMAT_VERSION = 1
WEIGHTS_FILE = "textrec_weights.safetensors"
CONFIG_FILE = "config.json"


def textrec_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("textrec")
    except PackageNotFoundError:
        return "0.0.0+local"


def framework_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "datasets", "huggingface_hub"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing optional package is reported as such
            out[pkg] = "not installed"
    return out


def _is_adapter_key(name: str) -> bool:
    return "lora_" in name


def extra_weights(model) -> dict[str, torch.Tensor]:
    """Every trainable weight that is not a LoRA adapter weight, plus all non-encoder weights."""
    out = {}
    for name, param in model.named_parameters():
        in_encoder = name.startswith("item_encoder.") or name.startswith("user_encoder.")
        if _is_adapter_key(name):
            continue
        if not in_encoder or param.requires_grad:
            out[name] = param.detach().cpu().contiguous()
    for name, buffer in model.named_buffers():
        if name == "id_trained":
            out[name] = buffer.detach().cpu().to(torch.uint8).contiguous()
    return out


def save_pretrained(
    model,
    directory: str | Path,
    model_config: ModelConfig,
    item_ids: Sequence[str],
    *,
    tokenizer=None,
    item_template: str | None = None,
    metrics: Mapping | None = None,
    extra_config: Mapping | None = None,
    card: str | None = None,
) -> Path:
    """Write the model folder atomically (call on the main process only). A text model needs its `item_template`:
    without it a served model would render its items with another text than the one it was trained on."""
    if model.has_text and not item_template:
        raise ValueError(f"{directory}: a text model is saved with its item_template (the text it was trained on)")
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        config = {
            "textrec_version": textrec_version(),
            "format_version": FORMAT_VERSION,
            "model": asdict(model_config),
            "num_items": model.num_items,
            "item_template": item_template,
            "metrics": dict(metrics or {}),
            "framework_versions": framework_versions(),
            **dict(extra_config or {}),
        }
        if model.has_text:
            config["base_encoder"] = base_record(model.item_encoder, model_config.encoder, model_config.revision)
            if model_config.train_mode == "lora":
                base_hub_id = config["base_encoder"]["hub_id"]
                save_adapter(model.item_encoder.model, tmp, base_hub_id)
                if model.user_encoder is not None:
                    save_adapter(model.user_encoder.model, tmp / "user_adapter", base_hub_id)
        save_file(extra_weights(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / "item_ids.json").write_text(json.dumps(list(item_ids)))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        existing = directory / "README.md"
        if card is None and existing.is_file() and not is_generated_card(existing.read_text()):
            shutil.copy2(existing, tmp / "README.md")  # create-or-update: a card the user edited is kept
        else:
            (tmp / "README.md").write_text(card if card is not None else model_card(config))
    return directory


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a textrec model folder (no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
    version = config.get("format_version")
    if version is None or "model" not in config:
        raise ValueError(f"{path}: not a textrec model config (no format_version/model)")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path}: field 'format_version' must be an integer, got {version!r}")
    if not isinstance(config["model"], dict):
        raise ValueError(f"{path}: field 'model' must be an object, got {config['model']!r}")
    required = ["num_items", "item_template"] + (["base_encoder"] if config["model"].get("encoder") else [])
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"{path}: missing field {missing[0]!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written by textrec {config.get('textrec_version')} in format {version}, newer than this "
            f"textrec ({textrec_version()}, format {FORMAT_VERSION}) can read; upgrade textrec"
        )
    return config


def load_folder(directory: str | Path, base=None, tokenizer=None):
    """Load a model folder on disk -> (TwoTowerModel, tokenizer, config dict). The base encoder is loaded once, from
    the recorded name (or `base` / `tokenizer` if given), and checked against the recorded fingerprint and weights
    hash."""
    from textrec.model.build import build_model

    directory = Path(directory)
    config = read_config(directory)
    model_cfg = ModelConfig(**config["model"])
    if model_cfg.encoder is not None:
        if base is None:
            base = load_base(directory, config)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(directory)
        check_base(directory, config["base_encoder"], base)
    model, tokenizer = build_model(model_cfg, config["num_items"], base, tokenizer)
    load_weights_into(model, directory)
    model.eval()
    return model, tokenizer, config


def load_weights_into(model, directory: str | Path) -> None:
    """Load a saved folder's adapters and weights into an already built model of the same configuration."""
    from peft import set_peft_model_state_dict

    directory = Path(directory)
    towers = [(model.item_encoder, directory / "adapter_model.safetensors")]
    if model.user_encoder is not None:
        towers.append((model.user_encoder, directory / "user_adapter" / "adapter_model.safetensors"))
    for text_encoder, path in towers:
        if text_encoder is None:
            continue  # an ID-only model: no encoder
        encoder = text_encoder.model
        wanted = [n for n, _ in encoder.named_parameters() if "lora_" in n]
        if not wanted:
            continue  # not a LoRA model: nothing to load into the encoder
        if not path.is_file():
            raise ValueError(f"{path}: missing; this is a LoRA model and needs its adapter weights")
        result = set_peft_model_state_dict(encoder, _read_safetensors(path))
        missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing:
            raise ValueError(
                f"{path}: adapter keys do not match the model (missing {missing[:3]}, unexpected "
                f"{list(result.unexpected_keys)[:3]})"
            )
    weights = _read_safetensors(directory / WEIGHTS_FILE)
    missing = set(extra_weights(model)) - set(weights) - {"id_trained"}  # optional: older folders lack it
    if missing:
        raise ValueError(f"{directory / WEIGHTS_FILE}: missing weights {sorted(missing)[:5]}")
    if "id_trained" in weights:
        weights["id_trained"] = weights["id_trained"].bool()
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{directory / WEIGHTS_FILE}: unexpected weights {sorted(result.unexpected_keys)[:5]}")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"{path}: missing")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types: name the file
        raise ValueError(f"{path}: unreadable safetensors file ({err})") from None
