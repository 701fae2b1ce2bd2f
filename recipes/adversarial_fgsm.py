"""FGSM adversarial training on embeddings, and robustness measured (protocol E4).

    python scripts/prepare_movielens.py
    accelerate launch recipes/adversarial_fgsm.py --config recipes/configs/fgsm_ml100k_minilm.yaml

Per seed: a normal model trained on the E1 split (early stopping on validation NDCG@10), then adversarial models
warm-started from it (as APR does) and trained on for a fixed number of epochs with loss = L(clean) + lambda *
L(perturbed) (`adv_loss`: the normal model's in-batch softmax, or the whole catalogue's), the perturbation FGSM or
L2 of relative size eps on the tower outputs or the token input embeddings of item text (`protocols.adversarial`).
On the first seed every (lambda, eps) of the grid is trained and one is chosen on validation only: the best
validation NDCG@10 under the FGSM attack at `select_eps` among those whose validation clean NDCG@10 is within
`clean_tolerance` of the normal model's; later seeds train the chosen one. A control continues the normal model
with lambda 0 for the same epochs. The test split is read after the choice is frozen: clean NDCG@10 and NDCG@10
under FGSM, L2 and same-size random noise at every eps of the grid, on the outputs (all models) and on the tokens
(normal and adversarial, first `token_attack_seeds` seeds). Writes `report.json` (one row per number) after every
seed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed

from textrec.config import config_to_dict
from textrec.data import dataset_name, load_data
from textrec.data.features import all_targets
from textrec.data.splits import leave_one_out
from textrec.evaluate.metrics import ndcg_per_event, paired_bootstrap
from textrec.evaluate.ranking import compute_text_vectors, evaluate_scores, popularity_scores
from textrec.files import atomic_write_text
from textrec.model.build import item_template
from textrec.model.hub import load_weights_into
from textrec.model.textrec_model import TextRecModel
from textrec.protocols.adversarial import (
    AdversarialObjective,
    TokenTable,
    attack_grid,
)
from textrec.protocols.sections import AdversarialConfig
from textrec.serve.launch import parse_recipe_args
from textrec.train.checkpoints import trainable_state
from textrec.train.loop import Validation, WindowExamples, fit, make_accelerator
from textrec.train.objectives import TrainingObjective

logger = logging.getLogger(__name__)


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    cfg = parse_recipe_args("adversarial_fgsm", __doc__)
    data_cfg, model_cfg, training, adv = cfg["data"], cfg["model"], cfg["training"], cfg["adversarial"]
    out = Path(adv.output_dir)
    accelerator = make_accelerator(training)

    # 1. Data: E1 leave-one-out
    with accelerator.main_process_first():
        data = load_data(data_cfg)
    split = leave_one_out(data)
    template = item_template(data, data_cfg)
    dataset = dataset_name(data_cfg, data)
    examples = WindowExamples(all_targets(split.train), model_cfg.max_history)
    freq = torch.as_tensor(popularity_scores(split.train, data.num_items), dtype=torch.float32) + 1.0
    steps_per_epoch = -(-len(examples) // (training.batch_size * accelerator.num_processes))
    report = {
        "config": config_to_dict(cfg),
        "protocol": "E4 on the E1 split, full ranking, history masked; eps relative to each vector's norm",
        "popularity_ndcg@10": evaluate_scores(freq.double(), split.test)["ndcg@10"],
        "rows": [],
        "selection": [],
        "costs": [],
        "bootstrap": [],
    }
    chosen = None
    for n, seed in enumerate(adv.seeds):
        # 2. Normal model: the E1 budget and stopping rule; the encoder is frozen, so its text vectors are a cache
        set_seed(seed)
        normal = TextRecModel.from_config(model_cfg, data.item_ids, item_template=template.template)
        towers = normal.towers
        towers.mark_trained_items(np.unique(np.concatenate(split.train)))
        tokens = normal.tokenize(template.render_all(data.items)) if normal.has_text else None
        text = compute_text_vectors(towers, tokens, 256, accelerator, None) if normal.has_text else None
        validation = Validation(split.valid, data.num_items, tokens)
        loop = dataclasses.replace(training, seed=seed)
        if adv.normal_from:  # a finished run's model: the same config and split, so its weights fit
            load_weights_into(towers, adv.normal_from[n])
            report["costs"].append({"seed": seed, "method": "normal", "loaded_from": str(adv.normal_from[n])})
        else:
            result = fit(
                TrainingObjective(towers, tokens, freq), examples, loop, accelerator, validation=validation,
                text_vectors=text, desc=f"normal seed {seed}",
            )  # fmt: skip
            report["costs"].append({"seed": seed, "method": "normal", **result.cost(), "stopped": result.stopped})
        models = {"normal": (normal.eval(), None)}  # name -> (TextRecModel, validation scores)

        # 3. Warm-started adversarial training: the grid on the first seed, chosen on validation; then the choice
        settings = [(w, e) for w in adv.weights for e in adv.train_eps_grid] if n == 0 else [chosen]
        settings += [(0.0, 0.0)] if adv.control else []
        # fixed epochs, no time budget and no early stopping: the grid compares settings at equal budgets
        adv_loop = dataclasses.replace(
            loop, epochs=adv.adv_epochs, lr=adv.adv_lr, max_train_minutes=0.0, encoder_warmup_epochs=0
        )
        valid_normal = validate(towers, split.valid, text, tokens, adv)
        report["selection"].append({"seed": seed, "method": "normal", "lambda": 0.0, "train_eps": 0.0, **valid_normal})
        for weight, eps in settings:
            model = copy.deepcopy(normal)  # warm start: the converged normal model's weights
            model.towers.train()
            start, reference = trainable_state(model.towers), trainable_state(towers)
            warm = start.keys() == reference.keys() and all(torch.equal(start[k], reference[k]) for k in start)
            objective = AdversarialObjective(
                model.towers, tokens, freq, eps=eps, norm=adv.train_norm, weight=weight, on=adv.train_on,
                ramp_steps=int(adv.ramp_epochs * steps_per_epoch), loss=adv.adv_loss,
            )  # fmt: skip
            name = "adversarial" if weight else "normal_continued"
            result = fit(objective, examples, adv_loop, accelerator, text_vectors=text, desc=f"{name} {weight} {eps}")
            scores = validate(model.eval().towers, split.valid, text, tokens, adv)
            logger.info(f"seed {seed} {name} lambda {weight} eps {eps}: validation {scores}")
            row = {"seed": seed, "method": name, "lambda": weight, "train_eps": eps, "warm_start": warm, **scores}
            report["selection"].append(row)
            report["costs"].append({"seed": seed, "method": name, "lambda": weight, "train_eps": eps, **result.cost()})
            models[(weight, eps) if weight else name] = (model, scores)
        if n == 0:
            chosen = choose(report["selection"], adv)
            report["chosen"] = {"lambda": chosen[0], "train_eps": chosen[1], "rule": selection_rule(adv)}
            logger.info(f"chosen on validation: lambda {chosen[0]}, train eps {chosen[1]}")
        models["adversarial"] = models[chosen]

        # 4. Evaluate on test, once per model, after the choice is frozen
        places = adv.attack_on if n < adv.token_attack_seeds else [p for p in adv.attack_on if p != "tokens"]
        ranks = {}
        for name in ("normal", "normal_continued", "adversarial"):
            if name not in models:
                continue
            model = models[name][0].towers
            weight, eps = chosen if name == "adversarial" else (0.0, 0.0)
            started = time.perf_counter()
            for on in places if name != "normal_continued" else [p for p in places if p != "tokens"]:
                table = TokenTable(model.item_encoder, tokens) if on == "tokens" else None
                for row in attack_grid(model, split.test, text, table, on=on, eps_grid=adv.eps_grid, seed=seed):
                    ranks[name, row["attack"], on, row["eps"]] = row.pop("ranks")
                    report["rows"].append(
                        {"dataset": dataset, "split": "test", "method": name, "lambda": weight, "train_eps": eps,
                         "train_norm": adv.train_norm, "train_on": adv.train_on, **row, "seed": seed}
                    )  # fmt: skip
            logger.info(f"seed {seed} {name}: attacked in {time.perf_counter() - started:.0f}s")
        report["bootstrap"] += paired(ranks, adv, seed)

        # 5. Save: the report after every seed, the first seed's models
        if accelerator.is_main_process:
            atomic_write_text(out / "report.json", json.dumps(report, indent=2))
            if n == 0:
                for name in ("normal", "adversarial"):
                    models[name][0].save_pretrained(out / name)
    if accelerator.is_main_process:
        print(f"report: {out / 'report.json'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group before exit


def validate(model, events, text, tokens, adv: AdversarialConfig) -> dict:
    """Validation NDCG@10 clean and under the selection attack (FGSM on what training perturbs, at select_eps)."""
    table = TokenTable(model.item_encoder, tokens) if adv.train_on == "tokens" else None
    rows = attack_grid(model, events, text, table, on=adv.train_on, eps_grid=[adv.select_eps], attacks=["sign"])
    return {"valid_clean": rows[0]["ndcg@10"], "valid_attacked": rows[1]["ndcg@10"]}


def selection_rule(adv: AdversarialConfig) -> str:
    reference = "the lambda-0 control's (same warm start and epochs)" if adv.control else "the normal model's"
    return (
        f"best validation NDCG@10 under FGSM (sign) on {adv.train_on} at eps {adv.select_eps} among the settings "
        f"whose validation clean NDCG@10 is at least {1 - adv.clean_tolerance:.2f} x {reference}; "
        "if none is, the best validation clean NDCG@10"
    )


def choose(selection: list[dict], adv: AdversarialConfig) -> tuple[float, float]:
    """The (lambda, eps) that `selection_rule` names, from the first seed's validation rows. The reference is the
    control when there is one: the normal model's validation score is the best of its run, so any further training
    starts below it."""
    first = [r for r in selection if r["seed"] == selection[0]["seed"]]
    rows = [r for r in first if r["method"] == "adversarial"]
    reference = next(r for r in first if r["method"] == ("normal_continued" if adv.control else "normal"))
    allowed = [r for r in rows if r["valid_clean"] >= (1 - adv.clean_tolerance) * reference["valid_clean"]]
    best = max(allowed, key=lambda r: r["valid_attacked"]) if allowed else max(rows, key=lambda r: r["valid_clean"])
    return best["lambda"], best["train_eps"]


def paired(ranks: dict, adv: AdversarialConfig, seed: int) -> list[dict]:
    """Paired bootstrap (1,000 resamples of test events) of adversarial - normal NDCG@10, clean and under FGSM."""
    out = []
    for attack, on, eps in [("none", "outputs", 0.0), ("sign", adv.train_on, adv.select_eps)]:
        a, b = ranks.get(("adversarial", attack, on, eps)), ranks.get(("normal", attack, on, eps))
        if a is not None and b is not None:
            stats = paired_bootstrap(ndcg_per_event(a), ndcg_per_event(b), seed=seed)
            out.append(
                {"seed": seed, "a": "adversarial", "b": "normal", "attack": attack, "on": on, "eps": eps, **stats}
            )
    return out


if __name__ == "__main__":
    main()
