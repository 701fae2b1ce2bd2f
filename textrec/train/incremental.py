"""Incremental updates: continue training an adapter on a new slice of interactions, as a new version.

`update_adapter` is the library entry point a scheduler (cron, Airflow) calls without the recipe: data in, adapter
version out. It trains through the library's one loop, `textrec.train.loop.fit`, like every recipe.

Versions live under one root folder: `slice_000/`, `slice_001/`, ... each a complete model folder
(`TextRecModel.save_pretrained`), plus `manifest.json` listing every version with its parent, strategy, data range,
metrics and cost, and which one is the latest. An update checkpoints into `.<version>.partial/` (safetensors and
JSON only: a planted pickle there is never loaded), so a killed update resumes, and becomes visible with one rename.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from textrec.data.splits import EvalEvent
from textrec.evaluate.ranking import popularity_scores
from textrec.files import atomic_write_text
from textrec.model.textrec_model import TextRecModel
from textrec.train.loop import LoopConfig, Validation, WindowExamples, fit, make_accelerator
from textrec.train.objectives import TrainingObjective

logger = logging.getLogger(__name__)


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
    model: TextRecModel,
    *,
    parent: str | None,
    strategy: str,
    data_range: tuple[float, float],
    cost: dict,
    metrics: Mapping | None = None,
) -> str:
    """Save `model` (`TextRecModel.save_pretrained`) as the registry's next version, trained from version `parent`
    by `strategy` on the interactions of `data_range` (first and last timestamp) at `cost`, and record it in the
    manifest as the latest."""
    version = registry.next_name()
    folder = model.save_pretrained(
        registry.root / version,
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
                "trainable_params": model.towers.trainable_parameters(),
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
    config: LoopConfig | None = None,
    validation=None,
    base=None,
    accelerator=None,
    parent_revision: str | None = None,
) -> str:
    """Continue training version `parent` (default: the latest; or a model folder or Hub repo id, at
    `parent_revision`) on new interactions; save a new version.

    `interactions` is a `RecData` whose catalogue covers every item of the update (new items are read through their
    text: the item tower needs no resizing); `context` (optional `RecData`) holds earlier interactions that give
    users their history but carry no loss (e.g. a replay sample or everything before the slice). Refuses an empty
    slice, and a slice older than the parent's data. A killed update resumes when called again. `config` says how
    the update trains (`train.loop.LoopConfig`; default: 2 epochs); `validation` (optional `RecData` of held-out
    interactions after the slice's) early-stops it on their NDCG@10. `accelerator`: default
    `make_accelerator(config)`, so the update runs on the GPU when there is one.
    """
    registry = registry if isinstance(registry, AdapterRegistry) else AdapterRegistry(registry)
    config = config or LoopConfig(epochs=2, patience=1, checkpoint_every=0)
    accelerator = accelerator or make_accelerator(config)
    parent = parent or registry.latest()
    loaded, stamps = _load_parent(registry, parent, parent_revision, interactions, base)
    catalogue = interactions.items
    updated = _next_version(loaded, interactions)
    model = updated.towers.train()  # the saved train mode was applied on load: the same weights train as before
    tokens = updated.tokenize(updated.template().render_all(catalogue))
    positions_data = interactions if context is None else _concat(context, interactions)
    index = {i: n for n, i in enumerate(catalogue["item_id"])}
    users, items, is_target = _coded(positions_data, index, len(context.interactions) if context is not None else 0)
    sequences = {}
    for user in np.unique(users):
        mine = users == user
        sequences[int(user)] = (items[mine], is_target[mine])
    freq = popularity_scores([items[is_target]], len(catalogue)).float() + 1
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    objective = TrainingObjective(model, tokens, freq)
    valid = None
    if validation is not None:
        events = _validation_events(positions_data, validation, index)
        valid = Validation(events, len(catalogue), tokens) if events else None
    result = fit(
        objective,
        WindowExamples(sequences.values(), model.max_history),
        config,
        accelerator,
        validation=valid,
        checkpoint_dir=registry.root / f".{registry.next_name()}.partial",
        run_config={"parent": parent, "strategy": strategy, "training": asdict(config), "rows": len(users)},
        anchor=anchor,
        desc=f"update {registry.next_name()}",
    )
    partial = registry.root / f".{registry.next_name()}.partial"
    if accelerator.is_main_process:
        save_version(
            registry,
            updated.eval(),
            parent=parent,
            strategy=strategy,
            data_range=(float(stamps.min()), float(stamps.max())),
            cost={**result.cost(), "best_valid_ndcg@10": result.best_valid_ndcg, "stopped": result.stopped},
        )
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    return registry.latest()


def _load_parent(registry: AdapterRegistry, parent, parent_revision, interactions, base):
    """The model an update starts from (a version of `registry`, or any model folder / Hub repo id, e.g. a model
    pulled from the Hub) and the slice's timestamps, after refusing what cannot be updated."""
    from textrec.model.hub import model_folder

    if parent is None:
        raise ValueError(f"{registry.root}: no version to update (train a base version first, or give a parent)")
    if len(interactions.interactions) == 0:
        raise ValueError("the slice is empty: nothing to update on")
    stamps = np.asarray(interactions.interactions["timestamp"])
    known = parent in {v["version"] for v in registry.versions()}
    if known and stamps.min() < registry.entry(parent)["data_range"][1]:
        raise ValueError(
            f"the slice starts at {stamps.min()}, before the end of {parent}'s data "
            f"({registry.entry(parent)['data_range'][1]}): slices must come in time order"
        )
    source = registry.path(parent) if known else model_folder(parent, parent_revision)
    loaded = TextRecModel.from_pretrained(source, base=base)
    if loaded.towers.id_embedding is not None:
        raise ValueError(
            "update_adapter needs a text-only item tower (model.id_embedding=false): new items must "
            "get their vectors from text"
        )
    return loaded, stamps


def _next_version(parent: TextRecModel, interactions) -> TextRecModel:
    """The model an update trains and saves: the parent's towers, tokenizer and item template over the slice's
    catalogue (its rows are what the update trains on; items new to the parent are read through their text). A
    parent folder of an older release that recorded no template renders item text as `Recommender` serves it:
    `default_template` over the catalogue's fields."""
    from textrec.data.text import default_template
    from textrec.model.build import retarget

    catalogue = interactions.items
    towers = parent.towers
    if towers.num_items != len(catalogue):
        towers = retarget(towers, len(catalogue))
    template = parent.item_template
    if not template:
        template = default_template(interactions.text_fields).template
        logger.warning(f"{parent.folder}: the model records no item template; rendering item text with {template!r}")
    return TextRecModel(
        towers, parent.config, catalogue["item_id"], tokenizer=parent.tokenizer, item_template=template
    )


def _concat(a, b):
    import datasets

    from textrec.data.records import RecData

    return RecData(datasets.concatenate_datasets([a.interactions, b.interactions]), b.items, b.source)


def _validation_events(history, held_out, index: Mapping[str, int]) -> list[EvalEvent]:
    """Each held-out interaction as an event ranked given its user's history in `history` (time order)."""
    users = np.asarray(history.interactions["user_id"], dtype=object)
    items = np.asarray([index[i] for i in history.interactions["item_id"]], dtype=np.int64)
    order = np.argsort(np.asarray(history.interactions["timestamp"], dtype=np.float64), kind="stable")
    by_user: dict = {}
    for row in order:
        by_user.setdefault(users[row], []).append(int(items[row]))
    unknown = sorted({i for i in held_out.interactions["item_id"] if i not in index})
    if unknown:
        raise ValueError(f"validation interactions name items missing from the catalogue: {unknown[:5]}")
    return [
        EvalEvent(u, tuple(by_user.get(u, ())), index[i])
        for u, i in zip(held_out.interactions["user_id"], held_out.interactions["item_id"])
        if u in by_user
    ]


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


__all__ = ["AdapterRegistry", "save_version", "update_adapter"]
