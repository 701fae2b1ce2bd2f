"""Artifacts on the Hub: a model folder found by local path or Hub repo id (`model_folder`, `load_pretrained`), and
pushed (`push_to_hub`, `push_or_explain` for recipes).

The folder format itself (layout, atomic save, config.json, weights) is `textrec.model.folder`'s; the base encoder's
record and check are `textrec.model.base_encoder`'s. Their public names are importable from here as well.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from textrec.files import atomic_write_text
from textrec.model.base_encoder import base_encoder_name, base_fingerprint
from textrec.model.card import is_generated_card, model_card
from textrec.model.folder import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    extra_weights,
    framework_versions,
    load_folder,
    load_weights_into,
    read_config,
    save_pretrained,
    textrec_version,
)
from textrec.model.weights import base_weights_hash

logger = logging.getLogger(__name__)


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


def load_pretrained(directory: str | Path, base=None, tokenizer=None, *, revision=None, token=None):
    """Load a model folder or Hub repo id (at `revision`) -> (TwoTowerModel, tokenizer, config dict). The base
    encoder is loaded once, from the recorded name (or `base`/`tokenizer` if given) and checked against the recorded
    fingerprint and weights hash."""
    return load_folder(model_folder(directory, revision, token), base, tokenizer)


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


__all__ = [  # the folder format's and the base encoder's names, importable from here as before they moved
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "base_encoder_name",
    "base_fingerprint",
    "base_weights_hash",
    "extra_weights",
    "framework_versions",
    "load_folder",
    "load_pretrained",
    "load_weights_into",
    "model_folder",
    "push_or_explain",
    "push_to_hub",
    "read_config",
    "save_pretrained",
    "textrec_version",
]
