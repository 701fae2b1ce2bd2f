"""Weight hashes: the one rule by which textrec feeds named tensors into a sha256 digest.

Every hash of weights goes through `update_with_tensors`: the base encoder's `weights_sha256` recorded in a saved
folder (`base_weights_hash`), the key of the cached text vectors (`text_vectors_key`) and the key of a
`Recommender`'s cached item index. The rule: names in sorted order, each name's UTF-8 bytes followed by the tensor's
raw bytes (contiguous, on the CPU, viewed as uint8, so any dtype hashes, bfloat16 and bool included).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import torch


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's raw bytes in memory order, whatever its dtype, device or layout."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def update_with_tensors(
    digest, tensors: Mapping[str, torch.Tensor], rename: Callable[[str], str | None] | None = None
) -> None:
    """Feed `tensors` into `digest` (a `hashlib` object): for each name in sorted order, its UTF-8 bytes, then the
    tensor's bytes. `rename(name)` gives the name a tensor is hashed under, or None to leave it out."""
    named = {}
    for name, tensor in tensors.items():
        key = rename(name) if rename is not None else name
        if key is not None:
            named[key] = tensor
    for name in sorted(named):
        digest.update(name.encode())
        digest.update(tensor_bytes(named[name]))


def tensors_sha256(tensors: Mapping[str, torch.Tensor], rename: Callable[[str], str | None] | None = None) -> str:
    """The hex sha256 of `tensors` under `update_with_tensors`' rule."""
    digest = hashlib.sha256()
    update_with_tensors(digest, tensors, rename)
    return digest.hexdigest()


def _base_name(name: str) -> str | None:
    """A base encoder weight's own name (peft's prefixes removed); None for a weight that is not the base's own."""
    if "lora_" in name or "modules_to_save" in name or "pooler." in name:
        return None  # adapters are not base weights; the pooler is unused and often missing from checkpoints
    return name.replace("base_model.model.", "", 1).replace(".base_layer", "")


def base_weights_hash(encoder) -> str:
    """sha256 of a base encoder's own weights (names and bytes; the unused pooler left out), the same before and after
    LoRA is applied. Saved folders record it: its value must never change for the same weights."""
    return tensors_sha256(encoder.state_dict(), _base_name)
