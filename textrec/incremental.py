"""Incremental updates: continue training an adapter on a new slice of interactions, as a new version.

`update_adapter` is the library entry point a scheduler (cron, Airflow) calls without the recipe: data in, adapter
version out. It is the one place where the library runs an optimisation loop, because an update *is* that loop;
the recipes keep their own explicit loops.

Versions live under one root folder: `slice_000/`, `slice_001/`, ... each a complete model folder
(`textrec.hub.save_pretrained`), plus `manifest.json` listing every version with its parent, strategy, data range,
metrics and cost, and which one is the latest. An update writes into `.<version>.partial/` (checkpointed after every
epoch, so a killed update resumes) and becomes visible with one rename.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from textrec.features import epoch_batches, pad_histories
from textrec.hub import atomic_write_text, save_pretrained
from textrec.training import TextVectorCache, TrainingObjective, encoder_is_trainable

logger = logging.getLogger(__name__)


@dataclass
class UpdateSettings:
    """How one update trains."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float = 2e-4
    max_live_items: int = 64
    cache_refresh_steps: int = 40
    l2sp: float = 0.0  # strength of the L2-SP penalty towards the parent's weights (0: off)
    seed: int = 0
    warmup_epochs: int = 0  # first epochs on cached (frozen) text vectors: heads and tower only, cheap


def target_windows(sequences: Mapping[int, tuple[np.ndarray, np.ndarray]], max_len: int):
    """Windows of (items, is_target) per user, cut from the most recent end; only marked events carry loss, the
    others are context. Windows without any target are dropped."""
    out = []
    for items, is_target in sequences.values():
        end = len(items)
        while end >= 2:
            start = max(0, end - max_len - 1)
            if is_target[start + 1 : end].any():
                out.append((np.asarray(items[start:end]), np.asarray(is_target[start:end])))
            end = start + 1
    return out


def collate_target_windows(windows, max_len: int, device=None):
    inputs, in_mask = pad_histories([w[:-1] for w, _ in windows], max_len)
    targets, t_mask = pad_histories([w[1:] for w, _ in windows], max_len)
    flags, _ = pad_histories([m[1:].astype(np.int64) for _, m in windows], max_len)
    inputs = inputs.masked_fill(~in_mask, -1)
    targets = targets.masked_fill(~(t_mask & flags.bool()), -1)
    return inputs.to(device), targets.to(device)


def fit(
    model,
    item_tokens,
    sequences,
    settings: UpdateSettings,
    item_freq: torch.Tensor,
    *,
    anchor: Mapping[str, torch.Tensor] | None = None,
    state_dir: Path | None = None,
    accelerator=None,
    warmup_epochs: int | None = None,
    num_negatives: int = 0,
    adversarial=None,
) -> dict:
    """Train `model` on the marked events of `sequences` (user -> (items, is_target)). Returns the cost.

    With `state_dir`, the model, optimizer and loop position are saved after every epoch and restored when the
    same call is made again after a kill. With an `accelerator`, batches are sharded over its processes (DDP).
    The first `warmup_epochs` (default: `settings.warmup_epochs`) keep the encoder out (no live item encoding: heads
    and tower only)."""
    warmup_epochs = settings.warmup_epochs if warmup_epochs is None else warmup_epochs
    windows = target_windows(sequences, model.max_history)
    objective = TrainingObjective(
        model,
        item_tokens,
        item_freq,
        num_negatives=num_negatives,
        max_live_items=settings.max_live_items,
        adversarial=adversarial,
    )
    enc = [p for n, p in model.named_parameters() if p.requires_grad and "_encoder." in n]
    heads = [p for n, p in model.named_parameters() if p.requires_grad and "_encoder." not in n]
    groups = [{"params": heads, "lr": settings.lr}] + ([{"params": enc, "lr": settings.encoder_lr}] if enc else [])
    optimizer = torch.optim.AdamW(groups)
    cost = {"seconds": 0.0, "steps": 0, "examples": 0, "epochs_done": 0}
    rng_state = None
    if state_dir is not None and (state_dir / "loop.json").is_file():
        cost = json.loads((state_dir / "loop.json").read_text())
        state = torch.load(state_dir / "state.pt", weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        rng_state = state["torch_rng"]
        logger.info(f"resuming the update from epoch {cost['epochs_done']} ({state_dir})")
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    cache = TextVectorCache()
    encoder_moved = True  # whether the cached text vectors may be stale
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    device = accelerator.device if accelerator else None
    wrapped = objective
    if accelerator is not None:
        wrapped, optimizer = accelerator.prepare(objective, optimizer)
    objective.train()
    from textrec.evaluation import compute_text_vectors

    # The update's own random stream (dropout): seeded, isolated from the caller's, restored on resume.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        if rng_state is not None:
            torch.set_rng_state(rng_state)
        for epoch in range(cost["epochs_done"], settings.epochs):
            started = time.perf_counter()
            learning = encoder_is_trainable(model) and epoch >= warmup_epochs
            objective.max_live_items = settings.max_live_items if learning else 0
            refresh = settings.cache_refresh_steps if learning else 0
            batches = epoch_batches(len(windows), settings.batch_size, settings.seed, epoch, rank, world)
            for i, batch in enumerate(batches):
                # Refreshing at every epoch start too makes a resumed update identical to an unbroken one. When the
                # encoder has not moved since the last refresh (after warm-up epochs), the vectors are the same:
                # only the schedule restarts, without encoding the catalogue again.
                if model.has_text and (cache.due(cost["steps"], refresh) or (i == 0 and learning)):
                    if encoder_moved or cache.vectors is None:
                        vectors = compute_text_vectors(model, item_tokens, accelerator=accelerator, desc=None)
                        encoder_moved = False
                    else:
                        vectors = cache.vectors
                    cache.refresh(vectors, cost["steps"])
                inputs, targets = collate_target_windows([windows[i] for i in batch], model.max_history, device)
                loss = wrapped(inputs, targets, cache=cache, seed=settings.seed * 1_000_003 + cost["steps"])
                if anchor is not None and settings.l2sp > 0:
                    loss = loss + settings.l2sp * sum(
                        ((named[n] - a) ** 2).sum() for n, a in anchor.items() if n in named
                    )
                if accelerator is not None:
                    accelerator.backward(loss)
                else:
                    loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                encoder_moved = encoder_moved or learning
                cost["steps"] += 1
                cost["examples"] += int((targets >= 0).sum()) * world
            cost["seconds"] += time.perf_counter() - started
            cost["epochs_done"] = epoch + 1
            if state_dir is not None and (accelerator is None or accelerator.is_main_process):
                state_dir.mkdir(parents=True, exist_ok=True)
                trainable = {
                    n: p.detach().clone()
                    for n, p in model.state_dict(keep_vars=True).items()
                    if isinstance(p, torch.nn.Parameter) and p.requires_grad
                }
                tmp = state_dir / "state.pt.tmp"
                torch.save(
                    {"model": trainable, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, tmp
                )
                tmp.replace(state_dir / "state.pt")
                atomic_write_text(state_dir / "loop.json", json.dumps(cost))
    return cost


class AdapterRegistry:
    """Versioned adapters under one root: slice_000, slice_001, ... and manifest.json."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            return {"versions": [], "latest": None}
        return json.loads(self.manifest_path.read_text())

    def versions(self) -> list[dict]:
        return self.manifest()["versions"]

    def latest(self) -> str | None:
        return self.manifest()["latest"]

    def entry(self, version: str) -> dict:
        for entry in self.versions():
            if entry["version"] == version:
                return entry
        raise KeyError(f"{self.root}: no version {version!r} (have {[v['version'] for v in self.versions()]})")

    def path(self, version: str) -> Path:
        self.entry(version)
        return self.root / version

    def next_name(self) -> str:
        return f"slice_{len(self.versions()):03d}"

    def register(self, entry: dict) -> None:
        manifest = self.manifest()
        manifest["versions"].append(entry)
        manifest["latest"] = entry["version"]
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2))


def adapter_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def save_version(
    registry: AdapterRegistry,
    model,
    model_config,
    item_ids,
    *,
    tokenizer,
    item_template,
    parent: str | None,
    strategy: str,
    data_range: tuple[float, float],
    cost: dict,
    metrics: Mapping | None = None,
) -> str:
    """Save `model` as the registry's next version and record it in the manifest (latest)."""
    version = registry.next_name()
    folder = save_pretrained(
        model,
        registry.root / version,
        model_config,
        item_ids,
        tokenizer=tokenizer,
        item_template=item_template,
        metrics=metrics,
        extra_config={"version": version, "parent": parent, "strategy": strategy},
    )
    registry.register(
        {
            "version": version,
            "parent": parent,
            "strategy": strategy,
            "data_range": list(data_range),
            "metrics": dict(metrics or {}),
            "cost": {
                **cost,
                "trainable_params": model.trainable_parameters(),
                "adapter_bytes": adapter_size_bytes(folder),
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    return version


def update_adapter(
    registry: AdapterRegistry | str | Path,
    interactions,
    *,
    parent: str | None = None,
    strategy: str = "finetune",
    context=None,
    settings: UpdateSettings | None = None,
    base=None,
) -> str:
    """Continue training version `parent` (default: the latest) on new interactions; save a new version.

    `interactions` is a `RecData` whose catalogue covers every item of the update (new items are read through their
    text: the item tower needs no resizing); `context` (optional `RecData`) holds earlier interactions that give
    users their history but carry no loss (e.g. a replay sample or everything before the slice). Refuses an empty
    slice, and a slice older than the parent's data. A killed update resumes when called again.
    """
    from textrec.build import item_tokens as build_tokens
    from textrec.config import ModelConfig
    from textrec.hub import load_pretrained
    from textrec.text import ItemTemplate

    registry = registry if isinstance(registry, AdapterRegistry) else AdapterRegistry(registry)
    settings = settings or UpdateSettings()
    parent = parent or registry.latest()
    if parent is None:
        raise ValueError(f"{registry.root}: no version to update (train a base version first)")
    entry = registry.entry(parent)
    if len(interactions.interactions) == 0:
        raise ValueError("the slice is empty: nothing to update on")
    stamps = np.asarray(interactions.interactions["timestamp"])
    if stamps.min() < entry["data_range"][1]:
        raise ValueError(
            f"the slice starts at {stamps.min()}, before the end of {parent}'s data ({entry['data_range'][1]}): "
            "slices must come in time order"
        )
    model, tokenizer, config = load_pretrained(registry.path(parent), base=base)
    model_cfg = ModelConfig(**config["model"])
    if model.id_embedding is not None:
        raise ValueError(
            "update_adapter needs a text-only item tower (model.id_embedding=false): new items must "
            "get their vectors from text"
        )
    model.train()  # build_model applied the saved train mode: the same weights train as in the base run
    catalogue = interactions.items
    template = ItemTemplate(config["item_template"])
    tokens = build_tokens(template.render_all(catalogue), tokenizer, model_cfg, model) if model.has_text else None
    positions_data = interactions if context is None else _concat(context, interactions)
    index = {i: n for n, i in enumerate(catalogue["item_id"])}
    users, items, is_target = _coded(positions_data, index, len(context.interactions) if context is not None else 0)
    sequences = {}
    for user in np.unique(users):
        mine = users == user
        sequences[int(user)] = (items[mine], is_target[mine])
    freq = torch.as_tensor(np.bincount(items[is_target], minlength=len(catalogue)), dtype=torch.float32) + 1
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    partial = registry.root / f".{registry.next_name()}.partial"
    cost = fit(model, tokens, sequences, settings, freq, anchor=anchor, state_dir=partial)
    version = save_version(
        registry,
        model.eval(),
        model_cfg,
        list(catalogue["item_id"]),
        tokenizer=tokenizer,
        item_template=template.template,
        parent=parent,
        strategy=strategy,
        data_range=(float(stamps.min()), float(stamps.max())),
        cost=cost,
    )
    shutil.rmtree(partial, ignore_errors=True)
    return version


def _concat(a, b):
    import datasets

    from textrec.data import RecData

    return RecData(datasets.concatenate_datasets([a.interactions, b.interactions]), b.items, b.source)


def _coded(data, index: Mapping[str, int], context_rows: int):
    """Users, items (catalogue index) and is-target flags in time order (stable)."""
    table = data.interactions
    stamps = np.asarray(table["timestamp"], dtype=np.float64)
    order = np.argsort(stamps, kind="stable")
    unknown = sorted({i for i in table["item_id"] if i not in index})
    if unknown:
        raise ValueError(f"interactions name items missing from the catalogue: {unknown[:5]}")
    users = np.unique(np.asarray(table["user_id"], dtype=object), return_inverse=True)[1][order]
    items = np.asarray([index[i] for i in table["item_id"]], dtype=np.int64)[order]
    is_target = (np.arange(len(table)) >= context_rows)[order]
    return users, items, is_target


__all__ = ["AdapterRegistry", "UpdateSettings", "fit", "save_version", "update_adapter"]
