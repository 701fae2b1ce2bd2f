"""Incremental LoRA under protocol E2: keep a recommender fresh on time-ordered slices, side by side with
frozen, fine-tune, replay, windowed, continue-on-all and full retraining.

    python scripts/prepare_movielens.py
    accelerate launch recipes/incremental_lora.py --config recipes/configs/incremental_ml100k_minilm.yaml

One base model (base period) is shared by every strategy; each updates it slice by slice through the library's one
loop, early-stopped on the validation events of the period it trains on, saving a versioned adapter per update
(`<output_dir>/<strategy>/slice_NNN` + manifest) and scoring every period's test events (the matrix R[t][j]). A
restarted run reuses saved versions and resumes an interrupted fit (`<output_dir>/.checkpoints`). Writes
`report.json`, `report.md` and `report.png`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed

from textrec.config import config_to_dict
from textrec.data import load_data
from textrec.evaluate.metrics import ndcg_per_event
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, evaluate, popularity_scores
from textrec.files import atomic_write_text
from textrec.model.build import item_template
from textrec.model.hub import load_weights_into
from textrec.model.textrec_model import TextRecModel
from textrec.protocols.reports import (
    add_paired_intervals,
    incremental_markdown,
    incremental_plot,
    incremental_rows,
    strategy_summary,
)
from textrec.protocols.stream import Reservoir, make_stream
from textrec.serve.launch import parse_recipe_args
from textrec.train.incremental import AdapterRegistry, save_version
from textrec.train.loop import LoopConfig, Validation, WindowExamples, fit, make_accelerator, trainable_state
from textrec.train.objectives import TrainingObjective

logger = logging.getLogger(__name__)
CONTINUING = ("finetune", "replay", "window", "continue_all")  # continue the previous adapter
# Settings of the updates alone (plus which strategies run): the base fit does not depend on them.
UPDATE_ONLY = ("strategies", "window", "reservoir_size", "lora_epochs_on")


def update_loop(training: LoopConfig, epochs: int, lr: float, warmup: int) -> LoopConfig:
    """An update's loop: the `training` section with the update's epochs, learning rate and warm-up."""
    return dataclasses.replace(training, epochs=epochs, lr=lr, encoder_warmup_epochs=warmup)


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    cfg = parse_recipe_args("incremental_lora", __doc__)
    data_cfg, model_cfg, training, inc = cfg["data"], cfg["model"], cfg["training"], cfg["incremental"]
    out, seed = Path(inc.output_dir), training.seed
    accelerator = make_accelerator(training)
    set_seed(seed)

    # 1. Data: the E2 stream (base period + T slices, 10% test and 10% validation held out of each)
    with accelerator.main_process_first():
        data = load_data(data_cfg)
    stream = make_stream(data, inc.base_fraction, inc.num_slices, inc.test_fraction, seed, inc.valid_fraction)
    periods = range(len(stream.periods))
    events = [stream.eval_events(p, inc.eval_cap, seed) for p in periods]
    valid_events = [stream.eval_events(p, inc.eval_cap, seed, split="valid") for p in periods]
    template = item_template(data, data_cfg)
    texts = template.render_all(data.items)
    logger.info(f"stream: {[p.size for p in stream.periods]} interactions per period; {[len(e) for e in events]} test")

    # 2. Model: the initial state every from-scratch run starts from (same seed, same weights)
    initial = TextRecModel.from_config(model_cfg, data.item_ids, item_template=template.template)
    tokens = initial.tokenize(texts) if initial.has_text else None
    initial_state = copy.deepcopy(initial.towers.state_dict())

    def fresh_model() -> TextRecModel:
        model = copy.deepcopy(initial)
        model.towers.load_state_dict(initial_state)
        return model

    # What a resumed fit must match. The base fit depends on the data, the model, the stream and its own loop only,
    # so runs that differ in update settings share (a copy of) one base checkpoint.
    run_config = config_to_dict(cfg)
    run_config["incremental"] = {k: v for k, v in run_config["incremental"].items() if k not in UPDATE_ONLY}
    base_only = {k: v for k, v in run_config["incremental"].items() if not k.startswith("update")}
    base_config = {**run_config, "incremental": base_only, "training": {**run_config["training"], "l2sp": 0.0}}

    valid_rows = {}  # model id -> NDCG@10 on every period's validation events (what budgets are tuned on)
    current_text = {}  # model id -> its catalogue text vectors from the last evaluation (the encoder has not moved)

    def train(model, positions, targets, period, loop, checkpoints, anchor=None, run_config=run_config):
        """One fit of `model` (a `TextRecModel`) on `targets` (stream positions) with `positions` as history
        context, early-stopped on the validation events of `period`; resumable from `checkpoints`."""
        sequences = stream.user_sequences(positions, targets)
        freq = popularity_scores([stream.items[targets]], data.num_items).float()
        objective = TrainingObjective(model.towers, tokens, freq + 1)
        result = fit(
            objective,
            WindowExamples(sequences.values(), model.towers.max_history),
            loop,
            accelerator,
            validation=Validation(valid_events[period], data.num_items, tokens),
            checkpoint_dir=checkpoints,
            run_config=run_config,
            anchor=anchor,
            text_vectors=current_text.pop(id(model), None),
            desc=checkpoints.name,
        )
        if result.text_vectors is not None:  # the encoder did not move: the next fit can start from these
            current_text[id(model)] = result.text_vectors
        return result.cost()

    def scores(model):
        """NDCG@10 on every period's test events (history masked), item vectors computed once; and the NDCG@10 of
        each event of every period (for paired intervals)."""
        towers = model.towers
        text = compute_text_vectors(towers, tokens, 256, accelerator, None) if model.has_text else None
        current_text[id(model)] = text  # the next fit of this model starts from these vectors
        vectors = compute_item_vectors(towers, text, data.num_items)
        ranks = [
            evaluate(towers, events[p], vectors, accelerator=accelerator, return_ranks=True)["ranks"] for p in periods
        ]
        per_event = [ndcg_per_event(r) for r in ranks]
        valid_rows[id(model)] = [
            evaluate(towers, e, vectors, accelerator=accelerator)["ndcg@10"] for e in valid_events
        ]
        return [float(e.mean()) for e in per_event], per_event

    def save(model, registry, parent, strategy, t, cost, row):
        if accelerator.is_main_process:
            period, metrics = stream.periods[t], {f"ndcg@10_period_{j}": v for j, v in enumerate(row)}
            data_range = (period.start_time, period.end_time)
            save_version(
                registry, model, parent=parent, strategy=strategy, data_range=data_range, cost=cost, metrics=metrics
            )
        accelerator.wait_for_everyone()
        return registry.latest()

    # 3. Base: trained once on the base period's training events, shared by every strategy
    checkpoints = out / ".checkpoints"  # kept until the report is written: a restarted run resumes from them
    base_positions = stream.train_positions(0)
    base_model = fresh_model()
    base_loop = dataclasses.replace(training, l2sp=0.0)  # the base fit has no earlier adapter to pull towards
    base_cost = train(
        base_model, base_positions, base_positions, 0, base_loop, checkpoints / "base", None, base_config
    )
    base_row, base_events = scores(base_model)
    logger.info(f"base: NDCG@10 per period {np.round(base_row, 4).tolist()} ({base_cost['seconds']:.0f}s)")

    report = {
        "config": config_to_dict(cfg),
        "periods": [p.size for p in stream.periods],
        "eval_events": [len(e) for e in events],
        "valid_events": [len(e) for e in valid_events],
        "base_cost": base_cost,
        "strategies": {},
    }
    one_update = update_loop(training, inc.update_epochs, inc.update_lr, inc.update_warmup_epochs)
    per_strategy_events = {}
    for strategy in inc.strategies:
        registry = AdapterRegistry(out / strategy)
        done = registry.versions()  # versions of an earlier, interrupted run of this config are kept and reused
        parent = done[0]["version"] if done else save(base_model, registry, None, "base", 0, base_cost, base_row)
        model, matrix, costs, latest_events = copy.deepcopy(base_model), [base_row], [], base_events
        prequential_events = []  # NDCG@10 of every test event of slice t under the model trained through t - 1
        valid_prequential, latest_valid = [], valid_rows[id(base_model)]
        reservoir = Reservoir(inc.reservoir_size, seed)
        reservoir.add(base_positions)
        for t in range(1, len(stream.periods)):
            started = time.perf_counter()
            prequential_events.append(latest_events[t])
            valid_prequential.append(latest_valid[t])
            seen = stream.train_positions(t)  # everything up to and including slice t: history context
            new = stream.periods[t].train
            ckpt = checkpoints / f"{strategy}_{t}"
            if strategy != "frozen" and t < len(done):  # finished before a restart: reuse that version
                entry = done[t]
                load_weights_into(model.towers, registry.path(entry["version"]))
                parent, cost = entry["version"], dict(entry["cost"])
                row, latest_events = scores(model)  # re-scored: per-event figures are not stored with versions
            elif strategy in CONTINUING:
                targets = {
                    "finetune": new,
                    "replay": np.union1d(new, reservoir.sample()),
                    "window": stream.train_positions(t, start=max(0, t - inc.window + 1)),
                    "continue_all": seen,
                }[strategy]
                anchor = trainable_state(model.towers) if training.l2sp else None
                split_epochs = inc.lora_epochs_on == "new" and 0 < inc.update_warmup_epochs < inc.update_epochs
                if split_epochs:  # the cheap epochs learn from slice + replay / window; the LoRA epochs from the slice
                    cheap = update_loop(training, inc.update_warmup_epochs, inc.update_lr, inc.update_warmup_epochs)
                    lora = update_loop(training, inc.update_epochs - inc.update_warmup_epochs, inc.update_lr, 0)
                    first = train(model, seen, targets, t, cheap, ckpt.with_name(ckpt.name + "_cheap"), anchor)
                    second = train(model, seen, new, t, lora, ckpt, anchor)
                    cost = {k: first[k] + second[k] for k in first}
                else:
                    cost = train(model, seen, targets, t, one_update, ckpt, anchor)
            elif strategy == "full_retrain":
                model = fresh_model()  # same starting point and stopping rule as the base run
                cost = train(model, seen, seen, t, base_loop, ckpt)
            else:  # frozen
                cost = {"seconds": 0.0, "steps": 0, "examples": 0, "epochs": 0}
            if strategy != "frozen" and t >= len(done):
                row, latest_events = scores(model)
                cost["wall_seconds"] = time.perf_counter() - started
                parent = save(model, registry, parent, strategy, t, cost, row)
                cost["adapter_bytes"] = registry.entry(parent)["cost"]["adapter_bytes"]
            elif strategy == "frozen":
                row, latest_events = base_row, base_events
            latest_valid = valid_rows.get(id(model), latest_valid) if strategy != "frozen" else latest_valid
            reservoir.add(new)
            matrix.append(row)
            costs.append(cost)
            logger.info(
                f"{strategy} slice {t}: NDCG@10 on slice {t} before {matrix[t - 1][t]:.4f}, after "
                f"{row[t]:.4f} ({cost['seconds']:.0f}s)"
            )
        summary = strategy_summary(matrix, costs, model.towers.trainable_parameters(), valid_prequential)
        report["strategies"][strategy] = summary
        per_strategy_events[strategy] = torch.cat(prequential_events)
    add_paired_intervals(report, per_strategy_events, "full_retrain", seed)

    # 4. Report: JSON, markdown table, plot
    report["rows"] = incremental_rows(report)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "report.json", json.dumps(report, indent=2))
        table = incremental_markdown(report)
        atomic_write_text(out / "report.md", table)
        incremental_plot(report, out / "report.png")
        print(table)
        print(f"report: {out / 'report.json'}  plot: {out / 'report.png'}  adapters: {out}/<strategy>/")
        for finished in checkpoints.glob("*"):  # the base's checkpoint stays: a re-run re-scores without retraining
            if finished.name != "base":
                shutil.rmtree(finished, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group before exit


if __name__ == "__main__":
    main()
