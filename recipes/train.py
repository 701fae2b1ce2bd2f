"""Train a text-aware two-tower recommender and evaluate it under protocol E1 (leave-one-out, full ranking).

    python scripts/prepare_movielens.py                      # once: ml-100k from the recbole wheel
    accelerate launch recipes/train.py --config recipes/configs/ml100k_minilm.yaml
    accelerate launch recipes/train.py --config recipes/configs/ml100k_minilm.yaml training.epochs=3

Any config field can be overridden as `section.field=value` (or `--section.field value`). The run trains through the
library's one loop (`textrec.train.loop.fit`) and writes `<output_dir>/model` (adapters + heads + config + model card,
no frozen base weights), `metrics.json`, `curves.png`, and checkpoints under `<output_dir>/checkpoints`. Restarted,
it resumes from the latest checkpoint (`training.resume`); re-running a finished run reports its results again.
`training.batch_size` is per process: `training.global_batch_size` keeps the global batch on any number of processes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from textrec.config import config_to_dict
from textrec.data import dataset_name, load_data
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out
from textrec.evaluate.ranking import (
    cached_text_vectors,
    compute_item_vectors,
    evaluate,
    evaluate_scores,
    popularity_scores,
)
from textrec.evaluate.results import environment
from textrec.files import atomic_write_text
from textrec.model.build import item_template
from textrec.model.hub import framework_versions, push_or_explain
from textrec.model.textrec_model import TextRecModel
from textrec.protocols.coldstart import (
    cold_start_markdown,
    cold_start_report,
    hold_out_items,
    slice_of_events,
    without_items,
)
from textrec.serve.launch import parse_recipe_args, run_label
from textrec.train.loop import (
    TextUserExamples,
    Validation,
    WindowExamples,
    fit,
    make_accelerator,
)
from textrec.train.objectives import TrainingObjective
from textrec.train.summary import examples_per_step, flat_config, peak_memory_mb, plot_curve, summary_table

logger = get_logger(__name__)


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    cfg = parse_recipe_args("train", __doc__)
    data_cfg, model_cfg, train_cfg = cfg["data"], cfg["model"], cfg["training"]
    output_dir = Path(train_cfg.output_dir)
    accelerator = make_accelerator(train_cfg, output_dir)
    set_seed(train_cfg.seed)

    # 1. Data: load, split (E1), render item text
    with accelerator.main_process_first():
        data = load_data(data_cfg)
    split = leave_one_out(data)
    if not split.valid or not split.test:
        raise ValueError(f"{data.source}: no user has 3 interactions, so E1 has no validation or test events")
    cold = []
    if train_cfg.cold_item_fraction > 0:  # E1-cold: held-out items leave training and every input history
        cold = hold_out_items(data.num_items, train_cfg.cold_item_fraction, train_cfg.cold_item_seed).tolist()
        split = without_items(split, cold)
    template = item_template(data, data_cfg)
    texts = template.render_all(data.items)
    logger.info(
        f"{data.source}: {len(data.interactions)} interactions, {data.num_items} items, "
        f"{len(split.train)} users, {len(split.test)} test events",
        main_process_only=True,
    )

    # 2. Model and objective
    model = TextRecModel.from_config(model_cfg, data.item_ids, item_template=template.template)
    towers = model.towers
    towers.mark_trained_items(np.unique(np.concatenate(split.train)))  # untrained id rows stay out of scoring
    tokens = model.tokenize(texts) if model.has_text else None
    hist_text = model.history_text(texts)
    popularity = popularity_scores(split.train, data.num_items)  # training counts: logQ, the baseline, E1-cold
    freq = popularity.float() + 1.0
    objective = TrainingObjective(towers, tokens, freq, train_cfg.loss, train_cfg.num_negatives, hist_text)
    if towers.user_tower == "sequence":
        ratings = split.train_ratings if train_cfg.loss == "mse" else None
        examples = WindowExamples(all_targets(split.train, ratings), model_cfg.max_history)
    else:
        examples = TextUserExamples(split.train, train_cfg.targets_per_user, train_cfg.seed)
    trainable = towers.trainable_parameters()
    # The catalogue under the untrained encoder: the loop's first text cache, E1-cold's content-similarity reference
    text_cache, batch = train_cfg.text_cache_dir, train_cfg.eval_batch_size
    first = tokens and (cold or text_cache)
    untrained = cached_text_vectors(towers, tokens, text_cache, batch, accelerator, None) if first else None
    logger.info(f"trainable parameters: {trainable:,}", main_process_only=True)

    # 3. Fit: the library's one loop, early stopping on validation NDCG@10, resumable
    run_config = {k: v for k, v in config_to_dict(cfg).items() if k != "hub"}
    if train_cfg.log_with:
        accelerator.init_trackers("textrec", config=flat_config(run_config))
    result = fit(
        objective,
        examples,
        train_cfg,
        accelerator,
        validation=Validation(split.valid, data.num_items, tokens, hist_text),
        checkpoint_dir=output_dir / "checkpoints",
        run_config=run_config,
        text_vectors=untrained,
    )

    # 4. Test: the best validation model, read once, both mask variants; popularity for reference
    text = (
        cached_text_vectors(towers, tokens, text_cache, train_cfg.eval_batch_size, accelerator, None)
        if tokens
        else None
    )
    vectors = compute_item_vectors(towers, text, data.num_items)
    results, ranks = {}, {}
    for mask in (True, False):
        results[f"test_mask={mask}"] = evaluate(
            towers,
            split.test,
            vectors,
            mask_history=mask,
            batch_size=train_cfg.eval_batch_size,
            history_text=hist_text,
            accelerator=accelerator,
            with_ratings=train_cfg.loss == "mse",
            return_ranks=True,
        )
        ranks[f"test_mask={mask}"] = results[f"test_mask={mask}"].pop("ranks")  # per event, for paired statistics
        results[f"popularity_mask={mask}"] = evaluate_scores(popularity, split.test, mask_history=mask)
    if cold:  # E1-cold slices: validation (for choosing a configuration) and test
        for name, events in (("cold_start_valid", split.valid), ("cold_start", split.test)):
            results[name] = cold_start_report(events, cold, model=towers, item_vectors=vectors, popularity=popularity,
                content_vectors=untrained, history_text=hist_text, batch_size=train_cfg.eval_batch_size,
                accelerator=accelerator)  # fmt: skip
        ranks["slice"] = slice_of_events(split.test, cold)
    summary = {
        "protocol": "E1" + ("-cold" if cold else "") + " leave-one-out, full ranking, pessimistic ties",
        "environment": environment(),  # textrec version, git commit, machine, threads, date: for the results rows
        "cold_items": cold,
        "best_valid_ndcg@10": result.best_valid_ndcg,
        "stopped": result.stopped,
        "epochs": result.epochs,
        "encoder_joined_after_epoch": result.encoder_joined,
        "placement": result.placement,
        "optimizer_steps": result.steps,
        "train_seconds": result.train_seconds,
        "epoch_seconds": result.train_seconds / max(result.epochs, 1e-9),
        "examples_per_second": result.examples / max(result.train_seconds, 1e-9),
        "trainable_params": trainable,
        "peak_memory_mb": peak_memory_mb(),
        "num_processes": accelerator.num_processes,
        "global_batch_size": examples_per_step(train_cfg, accelerator.num_processes),
        "results": results,
        "curve": result.curve,
        "config": config_to_dict(cfg),
    }

    # 5. Save: the model folder, metrics, curves, summary table
    if accelerator.is_main_process:
        metrics = {f"test_{k}": v for k, v in results["test_mask=True"].items()}
        model.save_pretrained(
            output_dir / "model",
            metrics=metrics,
            extra_config={
                "protocol": summary["protocol"] + ", history masked",
                "dataset": dataset_name(data_cfg, data),
                "framework_versions": framework_versions(),
            },
        )
        atomic_write_text(output_dir / "metrics.json", json.dumps(summary, indent=2))
        atomic_write_text(output_dir / "ranks.json", json.dumps({"events": [e.user for e in split.test], **ranks}))
        plot_curve(result.curve, output_dir / "curves.png")
        print(summary_table(summary, f"{run_label(sys.argv[1:])}, seed {train_cfg.seed}"))
        if cold:
            print(f"\nE1-cold, test, history masked ({len(cold)} held-out items):\n")
            print(cold_start_markdown(results["cold_start"]))
        print(f"model: {output_dir / 'model'}  metrics: {output_dir / 'metrics.json'}")

    # 6. Push (opt-in); a failed push logs how to push by hand and keeps the finished run
    if cfg["hub"].push_to_hub and accelerator.is_main_process:
        url = push_or_explain(output_dir / "model", cfg["hub"].repo_id, private=cfg["hub"].private)
        if url:
            print(f"pushed to {url}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
