"""Domain transfer (protocol E3): does what a text recommender learned in one domain carry over to another?

    python scripts/prepare_movielens.py
    accelerate launch recipes/domain_transfer.py --config recipes/configs/transfer_ml100k_minilm.yaml

MovieLens split by genre (target = movies with none of the source genres; disjoint item sets), each domain keeping
only its own items' interactions and split by E1 inside. A seeded 10% of target items is held out of training
entirely (E1-cold: `protocols.coldstart`), so every target row is reported on all / warm / cold test events. Methods:
zero-shot (source model, target items seen only through their text), LoRA adaptation of the source model on 5% /
20% / 100% of the target's training users, the same target data from the pretrained encoder without source
training ("scratch"), and textrec's ID-only model. Every fit runs through the library's one loop. A target fit, of
any method, has the budget of the `training` section: `training.epochs`, of which text models spend the first
`training.encoder_warmup_epochs` on frozen text vectors, and early stopping after `training.patience` validations
without a gain on the validation events of its own users. Text models do not count patience during their warm-up;
ID-only has no warm-up and gets `training.encoder_warmup_epochs` of extra patience instead, so that no method can
stop before epoch `encoder_warmup_epochs + patience`. The source fit takes `transfer.source_epochs` and
`transfer.source_warmup_epochs` and early-stops on the validation events of all target users, ranked through their
text (no target interaction is trained on).
References, each on the same target users as the rows they are compared with: popularity (counts of that
fraction's training users) and untrained content similarity (the pretrained encoder, over the whole history as in
E1-cold and over the last 5 items; no training data, so one row serves every fraction). Writes `report.json` (rows:
dataset, method, fraction, slice, seed, metrics, steps, seconds, trainable params), `ranks.json` (per-event test
ranks, for paired intervals), `report.md` and `report.png`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
from accelerate.utils import set_seed

from textrec.config import config_to_dict
from textrec.data import dataset_name, load_data
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out
from textrec.evaluate.ranking import compute_text_vectors, popularity_scores
from textrec.files import atomic_write_text
from textrec.model.build import item_template
from textrec.model.textrec_model import TextRecModel
from textrec.protocols.coldstart import hold_out_items, without_items
from textrec.protocols.reports import transfer_markdown, transfer_plot
from textrec.protocols.transfer import (
    content_ranks,
    fraction_users,
    model_ranks,
    popularity_ranks,
    retarget,
    slice_rows,
    split_domains,
)
from textrec.serve.launch import parse_recipe_args
from textrec.train.loop import Validation, WindowExamples, fit, make_accelerator
from textrec.train.objectives import TrainingObjective

logger = logging.getLogger(__name__)


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    cfg = parse_recipe_args("domain_transfer", __doc__)
    data_cfg, model_cfg, training, tr = cfg["data"], cfg["model"], cfg["training"], cfg["transfer"]
    out = Path(tr.output_dir)
    accelerator = make_accelerator(training)
    set_seed(training.seed)

    # 1. Data: source / target domains with disjoint items, E1 inside each, cold target items held out (E1-cold)
    with accelerator.main_process_first():
        data = load_data(data_cfg)
    dataset = tr.dataset or dataset_name(data_cfg, data)
    source, target = split_domains(data, tr.domain_field, tr.source_values)
    template = item_template(data, data_cfg)
    src_split = leave_one_out(source)
    cold = hold_out_items(target.num_items, tr.cold_item_fraction, tr.split_seed).tolist()
    tgt = without_items(leave_one_out(target), cold)
    test = tgt.test
    logger.info(
        f"source: {source.num_items} items, {len(source.interactions)} interactions; target: {target.num_items} "
        f"items ({len(cold)} cold), {len(target.interactions)} interactions, {len(test)} test events "
        f"({sum(e.target in set(cold) for e in test)} with a cold target)"
    )

    # 2. Model and the one training helper every fit goes through
    initial = TextRecModel.from_config(model_cfg, source.item_ids, item_template=template.template)
    src_tokens = initial.tokenize(template.render_all(source.items))
    tgt_tokens = initial.tokenize(template.render_all(target.items))

    def on_target(model: TextRecModel) -> TextRecModel:
        """`model`'s towers ranking the target catalogue: a text-only model has no per-item weights (`retarget`)."""
        towers = retarget(model.towers, target.num_items)
        return TextRecModel(
            towers, model.config, target.item_ids, tokenizer=model.tokenizer, item_template=model.item_template
        )

    def train(model: TextRecModel, *, tokens, sequences, num_items, epochs, warmup, valid, desc):
        """One fit of `model` through the library loop, early-stopped on `valid` (NDCG@10, history masked)."""
        freq = popularity_scores(sequences, num_items).float()
        # Text models' patience does not count in their frozen warm-up epochs; ID-only gets the same grace, so that
        # no method can stop before epoch encoder_warmup_epochs + patience.
        grace = 0 if tokens is not None else training.encoder_warmup_epochs
        loop = dataclasses.replace(
            training,
            epochs=epochs,
            encoder_warmup_epochs=warmup if tokens is not None else 0,
            patience=training.patience + grace,
        )
        objective = TrainingObjective(model.towers, tokens, freq + 1.0)
        examples = WindowExamples(all_targets([s for s in sequences if len(s) >= 2]), model.towers.max_history)
        result = fit(objective, examples, loop, accelerator, validation=valid, desc=desc)
        cost = {k: result.cost()[k] for k in ("steps", "seconds", "epochs")}
        return {**cost, "stopped": result.stopped, "best_valid_ndcg@10": result.best_valid_ndcg}

    rows, ranks = [], {}

    def report(method, fraction, method_ranks, **fields):
        ranks[f"{method}|{fraction}"] = method_ranks
        new = slice_rows(
            method_ranks, test, cold, dataset=dataset, method=method, fraction=fraction, seed=training.seed, **fields
        )
        rows.extend(new)
        logger.info(f"{method} {fraction:.0%}: target test NDCG@10 {new[0]['ndcg@10']:.4f}")

    # 3. References: untrained content similarity (no training data) and popularity of each fraction's users
    pretrained = compute_text_vectors(initial.towers, tgt_tokens, 256, accelerator, None)
    report("content_similarity", 0.0, content_ranks(pretrained, test), trainable_params=0)  # E1-cold's
    report("content_similarity_last5", 0.0, content_ranks(pretrained, test, last=5), trainable_params=0)
    chosen = {f: fraction_users(tgt.train, f, tr.split_seed) for f in tr.fractions}
    for fraction, users in chosen.items():
        counts = popularity_scores([tgt.train[u] for u in users], target.num_items)
        report("popularity", fraction, popularity_ranks(counts, test), trainable_params=0)

    # 4. Source training (saved as the source adapter), then zero-shot on the target catalogue
    source_cost = {}
    if {"zero_shot", "adapted"} & set(tr.methods):
        source_model = copy.deepcopy(initial)
        cost = train(
            source_model,
            tokens=src_tokens,
            sequences=src_split.train,
            num_items=source.num_items,
            epochs=tr.source_epochs,
            warmup=tr.source_warmup_epochs,
            valid=Validation(tgt.valid, target.num_items, tgt_tokens),  # the target catalogue, by text alone
            desc="source",
        )
        source_cost = {"source_steps": cost["steps"], "source_seconds": cost["seconds"]}
        if accelerator.is_main_process:
            source_model.save_pretrained(out / "source", extra_config={"domain": "source"})
        source_model = on_target(source_model.eval())
        zero_valid = cost["best_valid_ndcg@10"]  # the source fit stopped on the target validation events
        logger.info(f"zero-shot target validation NDCG@10 {zero_valid:.4f} (source fit: {cost})")
        if "zero_shot" in tr.methods:
            zero = model_ranks(source_model.towers, tgt_tokens, test, target.num_items, accelerator)
            report(
                "zero_shot",
                0.0,
                zero,
                steps=0,
                seconds=0.0,
                **source_cost,
                target_valid_ndcg=zero_valid,
                trainable_params=initial.towers.trainable_parameters(),
            )

    # 5. Target data at several user fractions: adapted from source, from the pretrained encoder, ID-only
    id_cfg = dataclasses.replace(model_cfg, encoder=None, id_embedding=True, user_content=0)
    for method in [m for m in ("adapted", "scratch", "id_only") if m in tr.methods]:
        for fraction, users in chosen.items():
            keep = set(users.tolist())
            seqs = [s if u in keep else s[:0] for u, s in enumerate(tgt.train)]
            extra = {}
            if method == "adapted":
                model, tokens, extra = copy.deepcopy(source_model), tgt_tokens, source_cost
                model.towers.train()
            elif method == "scratch":
                model, tokens = on_target(copy.deepcopy(initial)), tgt_tokens
            else:
                model, tokens = TextRecModel.from_config(id_cfg, target.item_ids), None
                model.towers.mark_trained_items(np.unique(np.concatenate([s for s in seqs if len(s)])))
                extra = {"rankable_items": int(model.towers.id_trained.sum())}
            valid = Validation([e for e in tgt.valid if e.user in keep], target.num_items, tokens)  # same users
            cost = train(
                model,
                tokens=tokens,
                sequences=seqs,
                num_items=target.num_items,
                epochs=training.epochs,
                warmup=training.encoder_warmup_epochs,
                valid=valid,
                desc=f"{method} {fraction:.0%}",
            )
            method_ranks = model_ranks(model.eval().towers, tokens, test, target.num_items, accelerator)
            trainable = model.towers.trainable_parameters()
            report(method, fraction, method_ranks, **cost, **extra, trainable_params=trainable)
            if method == "adapted" and fraction == max(tr.fractions) and accelerator.is_main_process:
                model.save_pretrained(
                    out / "target_adapted", extra_config={"domain": "target", "parent": str(out / "source")}
                )

    # 6. Report
    if accelerator.is_main_process:
        report_json = {
            "config": config_to_dict(cfg),
            "source_items": source.num_items,
            "target_items": target.num_items,
            "cold_items": len(cold),
            "target_test_events": len(test),
            "rows": rows,
        }
        atomic_write_text(out / "report.json", json.dumps(report_json, indent=2))
        atomic_write_text(out / "ranks.json", json.dumps(ranks))
        table = transfer_markdown(rows)
        atomic_write_text(out / "report.md", table)
        transfer_plot(rows, out / "report.png")
        print(table)
        print(f"report: {out / 'report.json'}  adapters: {out / 'source'}, {out / 'target_adapted'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group before exit


if __name__ == "__main__":
    main()
