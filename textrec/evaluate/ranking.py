"""Full-ranking evaluation (protocol E1), exact under any number of processes.

Work is cut into fixed batches by event (or item) index and the batches are dealt round-robin to processes, so
every batch is computed with the same shapes and contents whatever the number of processes; results are gathered
and put back in index order, padding removed. One process and N processes therefore give bit-identical results
(given the same number of BLAS threads per process, which changes float rounding), with no user counted twice
or dropped when the shards are uneven.
"""

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
from textrec.data.splits import EvalEvent
from textrec.evaluate.metrics import metrics_from_ranks, rating_errors, target_ranks
from textrec.files import load_keyed_tensors, save_keyed_tensors
from textrec.model.towers import TwoTowerModel

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
    for name, tensor in sorted(model.item_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
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


@torch.no_grad()
def evaluate(
    model: TwoTowerModel,
    events: Sequence[EvalEvent],
    item_vectors: torch.Tensor,
    *,
    mask_history: bool = True,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 256,
    history_text: HistoryText | None = None,
    accelerator=None,
    with_ratings: bool = False,
    desc: str | None = None,
    return_ranks: bool = False,
) -> dict[str, float]:
    """Full-ranking Recall/NDCG/MRR@K of each event's target over the whole catalogue.

    `item_vectors` [N, D] are computed once by the caller. With `mask_history`, items in the event's history are
    excluded from the ranking (never the target itself). With `with_ratings`, RMSE/MAE of predicted ratings too;
    with `return_ranks`, the target's 0-based rank of every event under "ranks".
    """
    was_training = model.training
    model.eval()
    num_items = item_vectors.shape[0]
    rankable = model.rankable_items(num_items)
    unrankable = None if rankable is None else ~rankable.to(item_vectors.device)

    def run(start, end):
        batch = events[start:end]
        if not batch:
            return torch.zeros((0, 2), dtype=torch.float64, device=item_vectors.device)
        users = encode_histories(model, [e.history for e in batch], item_vectors, history_text)
        scores = model.score(users, item_vectors, torch.arange(num_items, device=item_vectors.device))
        targets = torch.as_tensor([e.target for e in batch], device=scores.device)
        masked = None
        if mask_history:
            masked = torch.zeros((len(batch), num_items), dtype=torch.bool, device=scores.device)
            for row, e in enumerate(batch):
                if e.history:
                    masked[row, torch.as_tensor(e.history, device=scores.device)] = True
        if unrankable is not None:  # e.g. items an ID-only model never saw: ranked below everything
            scores = scores.masked_fill(unrankable, float("-inf"))
        ranks = target_ranks(scores, targets, masked).double()
        predicted = model.predict_rating(scores[torch.arange(len(batch)), targets]).double()
        return torch.stack([ranks, predicted], dim=1)

    try:
        out = sharded_map(run, len(events), batch_size, accelerator, desc)
    finally:
        model.train(was_training)
    metrics = metrics_from_ranks(out[:, 0].long().cpu(), ks)
    if return_ranks:  # 0-based rank of each event's target, for paired statistics
        metrics["ranks"] = out[:, 0].long().cpu().tolist()
    if with_ratings and events and events[0].rating is not None:
        metrics.update(rating_errors(out[:, 1].cpu(), [e.rating for e in events]))
    return metrics


def popularity_scores(train_sequences: Sequence, num_items: int) -> torch.Tensor:
    """Training-interaction counts per item: the popularity baseline's score."""
    counts = torch.zeros(num_items, dtype=torch.float64)
    for seq in train_sequences:
        counts += torch.bincount(torch.as_tensor(seq, dtype=torch.long), minlength=num_items).double()
    return counts


def evaluate_scores(
    scores: torch.Tensor, events: Sequence[EvalEvent], *, mask_history: bool = True, ks: Sequence[int] = (10, 20)
) -> dict[str, float]:
    """Metrics of a fixed score vector [N] shared by all users (e.g. popularity), same rules as `evaluate`."""
    return metrics_from_ranks([_rank(scores, e, mask_history) for e in events], ks)


def _rank(scores: torch.Tensor, event: EvalEvent, mask_history: bool) -> int:
    """0-based pessimistic rank of the event's target under `scores` [N], its history masked if asked."""
    masked = torch.zeros(len(scores), dtype=torch.bool)
    if mask_history and event.history:
        masked[torch.as_tensor(event.history)] = True
    return int(target_ranks(scores[None], torch.tensor([event.target]), masked[None])[0])


def evaluate_content_similarity(
    text_vectors: torch.Tensor,
    events: Sequence[EvalEvent],
    *,
    last: int | None = 5,
    mask_history: bool = True,
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """Metrics of a training-free content baseline: each user scores items by the cosine between their text vectors
    and the mean text vector of the user's `last` history items (None: all of them), e.g. the pretrained encoder's."""
    unit = torch.nn.functional.normalize(text_vectors.float(), dim=-1)
    ranks = []
    for e in events:
        recent = list(e.history) if last is None else list(e.history)[-last:]
        scores = unit @ unit[torch.as_tensor(recent)].mean(0) if recent else torch.zeros(len(unit))
        ranks.append(_rank(scores, e, mask_history))
    return metrics_from_ranks(ranks, ks)
