"""Domain transfer (protocol E3): does what a text recommender learned in one domain carry over to another?

    python scripts/prepare_movielens.py
    accelerate launch recipes/domain_transfer.py --config recipes/configs/transfer_ml100k_minilm.yaml

Default: MovieLens-100k split by genre (target = movies with none of the source genres; disjoint item sets), each
domain keeping only its own items' interactions and split by E1 inside. A seeded 10% of target items is held out of
training entirely (cold-start items). Methods, all evaluated on the target test split: zero-shot (source model,
target items seen only through their text), LoRA adaptation of the source adapter on 5% / 20% / 100% of the target's
training users (a new adapter version on top of the source one), the same target data from the pretrained encoder
without source training, and textrec's ID-only model (a budget of its own: its steps are cheap). Every fit runs
through the library's one loop and early-stops on the validation split of the domain it trains on (the target rows:
the validation events of the same target users). Two untrained
references: target popularity, and the pretrained encoder's content similarity (users = mean text vector of their
last 5 items). Writes `report.json`, `report.md` and `report.png`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed

from textrec.build import build_model, item_template, item_tokens
from textrec.config import DataConfig, ModelConfig, config_help, config_to_dict, load_config
from textrec.data import RecData, load_data
from textrec.engine import LoopConfig, Validation, WindowExamples, fit, make_accelerator
from textrec.evaluation import (
    compute_item_vectors,
    compute_text_vectors,
    evaluate,
    evaluate_content_similarity,
    evaluate_scores,
)
from textrec.features import all_targets
from textrec.files import atomic_write_text
from textrec.hub import save_pretrained
from textrec.objectives import TrainingObjective
from textrec.reports import transfer_markdown, transfer_plot
from textrec.splits import leave_one_out

logger = logging.getLogger(__name__)
SOURCE_GENRES = [
    "Action",
    "Adventure",
    "Sci-Fi",
    "Thriller",
    "War",
    "Crime",
    "Western",
    "Horror",
    "Mystery",
    "Film-Noir",
]
METHODS = ("zero_shot", "adapted", "scratch", "id_only")


@dataclass
class TransferConfig:
    """The domain split, the target fractions and the training budgets."""

    output_dir: str = field(default="outputs/transfer", metadata={"help": "reports and adapters"})
    seed: int = field(default=42, metadata={"help": "seed for user fractions, cold items and training"})
    domain_field: str = field(default="class", metadata={"help": "item field whose words decide the domain"})
    source_values: list = field(
        default_factory=lambda: list(SOURCE_GENRES),
        metadata={"help": "items whose field has any of these words are source items"},
    )
    cold_item_fraction: float = field(default=0.1, metadata={"help": "target items held out of training"})
    fractions: list = field(default_factory=lambda: [0.05, 0.2, 1.0], metadata={"help": "target user shares"})
    source_epochs: int = field(default=20, metadata={"help": "epochs on the source domain"})
    source_warmup_epochs: int = field(default=15, metadata={"help": "of those, on frozen text vectors first"})
    target_epochs: int = field(default=10, metadata={"help": "epochs on target data (every method)"})
    target_warmup_epochs: int = field(default=6, metadata={"help": "of those, on frozen text vectors first"})
    id_only_epochs: int = field(
        default=40, metadata={"help": "epochs of the ID-only baseline (its steps are cheap: a budget of its own)"}
    )
    methods: list = field(
        default_factory=lambda: list(METHODS), metadata={"help": f"which of {METHODS} to run (popularity is free)"}
    )
    patience: int = field(default=2, metadata={"help": "early stopping on target validation NDCG@10 (every fit)"})
    batch_size: int = field(default=64, metadata={"help": "windows per step and process"})
    lr: float = field(default=1e-3, metadata={"help": "heads and sequence tower"})
    encoder_lr: float = field(default=2e-4, metadata={"help": "LoRA weights"})

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"transfer.methods: unknown method {unknown[0]!r} (known: {METHODS})")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "transfer": TransferConfig}


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=config_help(SECTIONS), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML file under recipes/configs/")
    args, overrides = parser.parse_known_args()
    return load_config(SECTIONS, args.config, overrides)


def domain(data: RecData, item_rows: np.ndarray) -> RecData:
    """The sub-dataset of some items: their catalogue and only their interactions."""
    items = data.items.select(item_rows.tolist())
    keep = set(items["item_id"])
    rows = [i for i, item in enumerate(data.interactions["item_id"]) if item in keep]
    return RecData(data.interactions.select(rows), items, data.source)


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    cfg = parse_args()
    data_cfg, model_cfg, tr = cfg["data"], cfg["model"], cfg["transfer"]
    if model_cfg.id_embedding or model_cfg.encoder is None:
        raise ValueError(
            "model: transfer needs a text-only item tower (encoder set, id_embedding false); the "
            "ID-only baseline is built by the recipe itself"
        )
    out = Path(tr.output_dir)
    accelerator = make_accelerator(LoopConfig())
    set_seed(tr.seed)

    # 1. Data: source / target domains with disjoint items, E1 inside each, cold target items held out
    with accelerator.main_process_first():
        data = load_data(data_cfg)
    words = [set(str(v).split()) for v in data.items[tr.domain_field]]
    is_source = np.array([bool(w & set(tr.source_values)) for w in words])
    source, target = domain(data, np.flatnonzero(is_source)), domain(data, np.flatnonzero(~is_source))
    template = item_template(data, data_cfg)
    src_split, tgt_split = leave_one_out(source), leave_one_out(target)
    rng = np.random.default_rng(tr.seed)
    cold = set(rng.choice(target.num_items, int(round(target.num_items * tr.cold_item_fraction)), replace=False))
    tgt_train = [np.asarray([i for i in seq if i not in cold], dtype=np.int64) for seq in tgt_split.train]
    cold_events = [e for e in tgt_split.test if e.target in cold]
    logger.info(
        f"source: {source.num_items} items, {len(source.interactions)} interactions; target: "
        f"{target.num_items} items ({len(cold)} cold), {len(target.interactions)} interactions, "
        f"{len(tgt_split.test)} test events ({len(cold_events)} with a cold target)"
    )

    # 2. Model and training helpers
    initial, tokenizer = build_model(model_cfg, source.num_items)
    src_tokens = item_tokens(template.render_all(source.items), tokenizer, model_cfg, initial)
    tgt_tokens = item_tokens(template.render_all(target.items), tokenizer, model_cfg, initial)
    users = np.flatnonzero([len(s) >= 2 for s in tgt_train])
    order = rng.permutation(users)

    def train(model, tokens, sequences_list, num_items, epochs, warmup, valid_events):
        """One fit through the library loop, early-stopped on `valid_events` (NDCG@10, history masked)."""
        freq = torch.as_tensor(
            np.bincount(np.concatenate([s for s in sequences_list if len(s)] or [[0]]), minlength=num_items),
            dtype=torch.float32,
        )
        loop = LoopConfig(
            seed=tr.seed,
            epochs=epochs,
            batch_size=tr.batch_size,
            lr=tr.lr,
            encoder_lr=tr.encoder_lr,
            encoder_warmup_epochs=warmup,
            patience=tr.patience,
            checkpoint_every=0,
        )
        result = fit(
            TrainingObjective(model, tokens, freq + 1, max_live_items=loop.max_live_items),
            WindowExamples(all_targets([s for s in sequences_list if len(s) >= 2]), model.max_history),
            loop,
            accelerator,
            validation=Validation(valid_events, num_items, tokens),
        )
        return result.cost()

    def target_scores(model, tokens):
        text = compute_text_vectors(model, tokens, 256, accelerator, None) if tokens is not None else None
        vectors = compute_item_vectors(model, text, target.num_items)
        full = evaluate(model, tgt_split.test, vectors, accelerator=accelerator)
        cold_m = evaluate(model, cold_events, vectors, accelerator=accelerator) if cold_events else {}
        return {
            "ndcg@10": full["ndcg@10"],
            "recall@10": full["recall@10"],
            "cold_ndcg@10": cold_m.get("ndcg@10"),
            "cold_recall@10": cold_m.get("recall@10"),
            "trainable_params": model.trainable_parameters(),
        }

    # 3. Source training, saved as the source adapter (needed by zero-shot and adapted)
    results = {}
    counts = torch.as_tensor(np.bincount(np.concatenate(tgt_train), minlength=target.num_items), dtype=torch.float64)
    popularity = evaluate_scores(counts, tgt_split.test)  # a reference: the most popular target items, all users
    cold_pop = evaluate_scores(counts, cold_events)["ndcg@10"] if cold_events else None
    results["popularity"] = {"1.0": {**popularity, "cold_ndcg@10": cold_pop, "trainable_params": 0}}
    # A training-free reference: the pretrained encoder's text vectors, users = mean of their last 5 items.
    pretrained = compute_text_vectors(initial, tgt_tokens, 256, accelerator, None)
    content = evaluate_content_similarity(pretrained, tgt_split.test)
    cold_content = evaluate_content_similarity(pretrained, cold_events)["ndcg@10"] if cold_events else None
    results["content_pretrained"] = {"0": {**content, "cold_ndcg@10": cold_content, "trainable_params": 0}}
    logger.info(f"pretrained content similarity: target NDCG@10 {content['ndcg@10']:.4f}")
    if {"zero_shot", "adapted"} & set(tr.methods):
        source_model = copy.deepcopy(initial)
        train(
            source_model,
            src_tokens,
            src_split.train,
            source.num_items,
            tr.source_epochs,
            tr.source_warmup_epochs,
            src_split.valid,
        )
        if accelerator.is_main_process:
            save_pretrained(
                source_model,
                out / "source",
                model_cfg,
                source.item_ids,
                tokenizer=tokenizer,
                item_template=template.template,
                extra_config={"domain": "source"},
            )
    if "zero_shot" in tr.methods:
        results["zero_shot"] = {"0": target_scores(source_model.eval(), tgt_tokens)}
        logger.info(f"zero-shot target NDCG@10 {results['zero_shot']['0']['ndcg@10']:.4f}")

    # 4. Target data at several user fractions: adapted from source, from the pretrained encoder, ID-only
    id_cfg = ModelConfig(**{**model_cfg.__dict__, "encoder": None, "id_embedding": True})
    for method in [m for m in ("adapted", "scratch", "id_only") if m in tr.methods]:
        results[method] = {}
        for fraction in tr.fractions:
            chosen = set(order[: max(1, int(round(len(order) * fraction)))].tolist())
            seqs = [s if u in chosen else s[:0] for u, s in enumerate(tgt_train)]
            if method == "adapted":
                model, tokens = copy.deepcopy(source_model).train(), tgt_tokens
            elif method == "scratch":
                model, tokens = copy.deepcopy(initial), tgt_tokens
            else:
                model, tokens = build_model(id_cfg, target.num_items)[0], None
                model.mark_trained_items(np.unique(np.concatenate([s for s in seqs if len(s)])))
            cost = train(
                model,
                tokens,
                seqs,
                target.num_items,
                tr.target_epochs if method != "id_only" else tr.id_only_epochs,
                tr.target_warmup_epochs if method != "id_only" else 0,
                [e for e in tgt_split.valid if e.user in chosen],  # the same users' validation events
            )
            results[method][str(fraction)] = {**target_scores(model.eval(), tokens), **cost}
            logger.info(f"{method} {fraction:.0%}: target NDCG@10 {results[method][str(fraction)]['ndcg@10']:.4f}")
            if method == "adapted" and fraction == max(tr.fractions) and accelerator.is_main_process:
                save_pretrained(
                    model,
                    out / "target_adapted",
                    model_cfg,
                    target.item_ids,
                    tokenizer=tokenizer,
                    item_template=template.template,
                    extra_config={"domain": "target", "parent": str(out / "source")},
                )

    # 5. Report
    if accelerator.is_main_process:
        report = {
            "config": config_to_dict(cfg),
            "source_items": source.num_items,
            "target_items": target.num_items,
            "cold_items": len(cold),
            "target_test_events": len(tgt_split.test),
            "cold_test_events": len(cold_events),
            "results": results,
        }
        atomic_write_text(out / "report.json", json.dumps(report, indent=2))
        table = transfer_markdown(results)
        atomic_write_text(out / "report.md", table)
        transfer_plot(results, out / "report.png")
        print(table)
        print(f"report: {out / 'report.json'}  adapters: {out / 'source'}, {out / 'target_adapted'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group before exit


if __name__ == "__main__":
    main()
