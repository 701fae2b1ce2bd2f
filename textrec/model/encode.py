"""Encoding with a model: the catalogue's pooled text vectors (in shards across processes, optionally cached on
disk), item vectors and user vectors of histories. Evaluation, training and serving all encode through these."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from textrec.data.features import HistoryText, ItemTokens, pad_histories
from textrec.files import load_keyed_tensors, save_keyed_tensors
from textrec.model.towers import TwoTowerModel
from textrec.model.weights import update_with_tensors

logger = logging.getLogger(__name__)


def sharded_map(
    fn: Callable[[int, int], torch.Tensor], n: int, batch_size: int, accelerator=None, desc: str | None = None
) -> torch.Tensor:
    """Apply `fn(start, end) -> [end - start, ...]` over fixed batches of range(n), sharded over processes;
    returns the [n, ...] result on every process."""
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    num_batches = math.ceil(n / batch_size)
    rounds = math.ceil(num_batches / world)
    local = []
    show = desc is not None and rank == 0
    for r in tqdm(range(rounds), desc=desc, disable=not show, leave=False):
        b = r * world + rank
        start, end = b * batch_size, min(n, (b + 1) * batch_size)
        if b < num_batches:
            out = fn(start, end)
        else:
            out = None
        local.append(out)
    template = next((o for o in local if o is not None), None)
    if template is None:  # this process had nothing: ask for the shape by running an empty batch
        template = fn(0, 0)
    padded = []
    for out in local:
        block = torch.zeros((batch_size, *template.shape[1:]), dtype=template.dtype, device=template.device)
        if out is not None:
            block[: len(out)] = out
        padded.append(block)
    stacked = torch.cat(padded) if padded else template[:0]
    if world == 1:
        return stacked[:n]
    gathered = accelerator.gather(stacked.contiguous())
    blocks = gathered.view(world, rounds, batch_size, *template.shape[1:])
    ordered = blocks.transpose(0, 1).reshape(rounds * world * batch_size, *template.shape[1:])
    return ordered[:n]


@torch.no_grad()
def compute_text_vectors(
    model: TwoTowerModel,
    item_tokens: ItemTokens,
    batch_size: int = 256,
    accelerator=None,
    desc: str | None = "encoding items",
) -> torch.Tensor:
    """Pooled text vectors [N, H] of every item (the language model's part of the item tower)."""
    device = next(model.parameters()).device

    def run(start, end):
        ids, mask = item_tokens.batch(range(start, end), device=device)
        if end == start:
            return torch.zeros((0, model.item_encoder.hidden_size), device=device)
        return model.item_text_vectors(ids, mask).float()

    was_training = model.training
    model.eval()
    try:
        return sharded_map(run, len(item_tokens), batch_size, accelerator, desc)
    finally:
        model.train(was_training)


def text_vectors_key(model: TwoTowerModel, item_tokens: ItemTokens) -> str:
    """sha256 of what decides the catalogue's pooled text vectors: the encoder's weights (adapter included), its
    pooling, and every item's token ids."""
    digest = hashlib.sha256(f"pooling={model.item_encoder.pooling}\n".encode())
    update_with_tensors(digest, model.item_encoder.state_dict())
    for ids in item_tokens.input_ids:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"\x00")
    return digest.hexdigest()


def cached_text_vectors(
    model: TwoTowerModel,
    item_tokens: ItemTokens,
    cache_dir: str | Path | None,
    batch_size: int = 256,
    accelerator=None,
    desc: str | None = "encoding items",
) -> torch.Tensor:
    """`compute_text_vectors`, read from / written to `cache_dir` (a safetensors file named by `text_vectors_key`)
    when one is given: a second run over the same catalogue with the same encoder weights skips the encode."""
    if cache_dir is None:
        return compute_text_vectors(model, item_tokens, batch_size, accelerator, desc)
    key = text_vectors_key(model, item_tokens)
    path = Path(cache_dir) / f"text_vectors-{key[:24]}.safetensors"
    stored = load_keyed_tensors(path, key)
    if stored is not None and len(stored["vectors"]) == len(item_tokens):
        logger.info(f"text vectors of {len(item_tokens)} items read from {path}")
        return stored["vectors"].to(next(model.parameters()).device)
    vectors = compute_text_vectors(model, item_tokens, batch_size, accelerator, desc)
    if accelerator is None or accelerator.is_main_process:
        save_keyed_tensors(path, {"vectors": vectors}, key)  # atomic: a reader never sees half a file
    return vectors


@torch.no_grad()
def compute_item_vectors(
    model: TwoTowerModel, text_vectors: torch.Tensor | None, num_items: int | None = None, batch_size: int = 4096
) -> torch.Tensor:
    """Final item vectors [N, D] from pooled text vectors (or ids only)."""
    n = num_items if num_items is not None else len(text_vectors)
    device = next(model.parameters()).device
    out = []
    for start in range(0, n, batch_size):
        ids = torch.arange(start, min(n, start + batch_size), device=device)
        text = text_vectors[start : start + batch_size].to(device) if text_vectors is not None else None
        out.append(model.item_vectors(ids, text).float())
    return torch.cat(out)


@torch.no_grad()
def encode_histories(
    model: TwoTowerModel,
    histories: Sequence[Sequence[int]],
    item_vectors: torch.Tensor,
    history_text: HistoryText | None = None,
) -> torch.Tensor:
    """User vectors [B, D] for histories of item indices (sequence tower) or rendered as text (text tower)."""
    device = item_vectors.device
    if model.user_tower == "sequence":
        items, mask = pad_histories(histories, model.max_history, device)
        vectors = item_vectors[items] * mask.unsqueeze(-1)
        return model.encode_users_sequence(vectors, mask).float()
    if history_text is None:
        raise ValueError("the text user tower needs a HistoryText to render histories")
    ids, attn = history_text.tokenize(histories, device=device)
    return model.encode_users_text(ids, attn).float()
