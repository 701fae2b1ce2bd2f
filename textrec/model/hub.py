"""Artifacts: an HF/PEFT-compatible folder holding adapters and small heads, never the frozen base encoder.

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
import logging
import os
import platform
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from textrec.config import ModelConfig
from textrec.files import atomic_dir, atomic_write_text
from textrec.model.encoders import PACKAGES, hub_id, load_encoder_and_tokenizer, short_name, source_revision

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_FILE = "textrec_weights.safetensors"
CONFIG_FILE = "config.json"


def textrec_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("textrec")
    except PackageNotFoundError:
        return "0.0.0+local"


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


def base_weights_hash(encoder) -> str:
    """sha256 of a base encoder's own weights (names and bytes; the unused pooler left out), the same before and after
    LoRA is applied."""
    import hashlib

    digest = hashlib.sha256()
    tensors = {}
    for name, tensor in encoder.state_dict().items():
        if "lora_" in name or "modules_to_save" in name or "pooler." in name:
            continue  # adapters are not base weights; the pooler is unused and often missing from checkpoints
        tensors[name.replace("base_model.model.", "", 1).replace(".base_layer", "")] = tensor
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def base_fingerprint(encoder_config) -> dict:
    """What must match between a saved adapter and the base encoder it is loaded on."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")
    return {k: getattr(encoder_config, k, None) for k in keys}


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
            base = _base_model(model.item_encoder.model)
            name = model_config.encoder
            config["base_encoder"] = {
                "name": name,
                "hub_id": None if Path(name).is_dir() else hub_id(name),
                "revision": source_revision(name, model_config.revision),
                "pooling": model.item_encoder.pooling,
                **base_fingerprint(base.config),
                "weights_sha256": base_weights_hash(model.item_encoder.model),
            }
            if model_config.train_mode == "lora":
                model.item_encoder.model.save_pretrained(tmp)
            if model.user_encoder is not None and model_config.train_mode == "lora":
                model.user_encoder.model.save_pretrained(tmp / "user_adapter")
        save_file(extra_weights(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / "item_ids.json").write_text(json.dumps(list(item_ids)))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        from textrec.model.card import is_generated_card, model_card

        existing = directory / "README.md"
        if card is None and existing.is_file() and not is_generated_card(existing.read_text()):
            shutil.copy2(existing, tmp / "README.md")  # create-or-update: a card the user edited is kept
        else:
            (tmp / "README.md").write_text(card if card is not None else model_card(config))
    return directory


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_folder(name_or_path: str | Path, revision: str | None = None, token: str | bool | None = None) -> Path:
    """A model folder on disk for a local path or a Hub repo id (`owner/name`, at `revision`), downloaded through
    `huggingface_hub.snapshot_download`, which honours HF_HUB_OFFLINE, the cache and tokens as the Hub libraries do."""
    path = Path(name_or_path)
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"{path}: a local folder has no revision (revision={revision!r} is for Hub repo ids)")
        return path
    text = str(name_or_path)
    if text.count("/") != 1 or text.startswith((".", "/")) or " " in text:
        raise FileNotFoundError(f"{text}: neither a model folder nor a Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            text, revision=revision, token=token, library_name="textrec", library_version=textrec_version()
        )
    except LocalEntryNotFoundError as err:
        raise ValueError(
            f"{text}@{revision or 'main'}: not in the local Hub cache and the Hub cannot be reached "
            f"(offline: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {err}"
        ) from None
    except HfHubHTTPError as err:
        raise ValueError(f"{text}@{revision or 'main'}: cannot be downloaded from the Hub ({err})") from None
    return Path(folder)


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


def load_pretrained(directory: str | Path, base=None, tokenizer=None, *, revision=None, token=None):
    """Load a model folder or Hub repo id (at `revision`) -> (TwoTowerModel, tokenizer, config dict). The base
    encoder is loaded once, from the recorded name (or `base`/`tokenizer` if given) and checked against the recorded
    fingerprint and weights hash."""
    from textrec.model.build import build_model

    directory = model_folder(directory, revision, token)
    config = read_config(directory)
    model_cfg = ModelConfig(**config["model"])
    if model_cfg.encoder is not None:
        if base is None:
            base = _load_base(directory, base_encoder_name(config), model_cfg.revision)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(directory)
        expected = {k: v for k, v in config["base_encoder"].items() if k in base_fingerprint(base.config)}
        found = base_fingerprint(base.config)
        saved_hash = config["base_encoder"].get("weights_sha256")  # absent in folders older than this check
        if expected == found and saved_hash is not None:
            given_hash = base_weights_hash(base)
            if given_hash != saved_hash:
                recorded = config["base_encoder"]  # hub_id and revision: absent in older folders
                trained_on = recorded.get("hub_id") or recorded["name"]
                if recorded.get("revision"):
                    trained_on += f" at revision {recorded['revision']}"
                given = f" (from {base.name_or_path})" if base.name_or_path else ""
                raise ValueError(
                    f"{directory}: the adapter was trained on base encoder {recorded['name']!r} with weights sha256 "
                    f"{saved_hash[:16]}..., but the encoder given{given} has other weights of the same shape (sha256 "
                    f"{given_hash[:16]}...): load the base it was trained on ({trained_on})"
                )
        if expected != found:
            diff = {k: (expected[k], found[k]) for k in expected if expected[k] != found[k]}
            raise ValueError(
                f"{directory}: the adapter was trained on base encoder {config['base_encoder']['name']!r}, but the "
                f"encoder given differs: {diff} (saved, found)"
            )
    model, tokenizer = build_model(model_cfg, config["num_items"], base, tokenizer)
    load_weights_into(model, directory)
    model.eval()
    return model, tokenizer, config


def _load_base(directory: Path, name: str, revision: str | None):
    try:
        return load_encoder_and_tokenizer(name, revision)[0]
    except OSError as err:
        short = short_name(name)
        offline = f"; `{PACKAGES[short][2]}` provides it offline" if short else ""
        raise OSError(
            f"{directory}: cannot load its base encoder {name!r} at revision {revision}{offline} ({err})"
        ) from None


def base_encoder_name(config: dict) -> str:
    """The name to load a saved model's base encoder by: a local folder as it is, any other name as its Hub id (also
    a short name from an older folder), which `resolve_encoder` loads from the offline package when installed."""
    name = config["model"]["encoder"]
    return name if Path(name).is_dir() else hub_id(name)


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


def push_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload textrec model",
    api=None,
) -> str:
    """Upload a saved model folder to the Hub (create the repo if needed). A generated model card in the folder is
    rewritten first so that its usage snippet names `repo_id`; a card the user edited, in the folder or on the Hub
    (it no longer matches the card textrec generated), is left as it is. Returns the repo URL."""
    from huggingface_hub import HfApi

    from textrec.model.card import is_generated_card, model_card

    directory = Path(directory)
    config = read_config(directory)  # refuse to push something that is not a textrec folder
    card = directory / "README.md"
    if card.is_file() and is_generated_card(card.read_text()):
        atomic_write_text(card, model_card(config, repo_id))  # the usage snippet names the repo
    api = api or HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    ignore = [".*", "**/.*"]
    if api.file_exists(repo_id, "README.md"):
        remote = Path(api.hf_hub_download(repo_id, "README.md")).read_text()
        if not is_generated_card(remote):
            ignore.append("README.md")
            logger.info(f"{repo_id}: README.md on the Hub was edited by hand; leaving it as it is")
    api.upload_folder(
        repo_id=repo_id, folder_path=str(directory), commit_message=commit_message, ignore_patterns=ignore
    )
    return str(url)


def push_or_explain(directory: str | Path, repo_id: str, **kwargs) -> str | None:
    """For recipes: push, and on failure log how to push by hand instead of failing a finished run."""
    try:
        return push_to_hub(directory, repo_id, **kwargs)
    except Exception as e:  # noqa: BLE001 - any failure (network, auth) must not lose the run
        logger.error(
            f"push to {repo_id} failed ({type(e).__name__}: {e}). The model is saved in {directory}; "
            f"push it later with: textrec push --model {directory} --repo-id {repo_id}"
        )
        return None


def framework_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "datasets", "huggingface_hub"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing optional package is reported as such
            out[pkg] = "not installed"
    return out
