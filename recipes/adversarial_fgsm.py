"""FGSM adversarial training on embeddings, and robustness measured (protocol E4).

    python scripts/prepare_movielens.py
    accelerate launch recipes/adversarial_fgsm.py --config recipes/configs/fgsm_ml100k_minilm.yaml

Trains two models with the same budget on the E1 split: a normal one and an adversarially trained one
(loss = L(clean) + lambda * L(perturbed), the perturbation FGSM or L2 on the tower outputs). Then evaluates both on
the test split: clean NDCG@10, and NDCG@10 under FGSM and L2 attacks at eps in a grid relative to the mean
embedding norm, applied to the tower outputs or to the token input embeddings of item text, plus random noise of the
same norm as a control. Writes `report.json` and `report.md`.
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

from textrec.adversarial import perturbation, random_perturbation
from textrec.build import build_model, item_template, item_tokens
from textrec.config import DataConfig, ModelConfig, config_help, config_to_dict, load_config
from textrec.data import load_data
from textrec.engine import LoopConfig, Validation, WindowExamples, fit, make_accelerator
from textrec.evaluation import compute_item_vectors, compute_text_vectors, evaluate, evaluate_scores
from textrec.features import all_targets, pad_histories
from textrec.files import atomic_write_text
from textrec.hub import save_pretrained
from textrec.metrics import metrics_from_ranks, target_ranks
from textrec.objectives import AdversarialSettings, TrainingObjective
from textrec.splits import leave_one_out

logger = logging.getLogger(__name__)


@dataclass
class AdversarialConfig:
    """Training budget, the adversarial term, and the attack grid."""

    output_dir: str = field(default="outputs/fgsm", metadata={"help": "reports and both models"})
    seed: int = field(default=42, metadata={"help": "seed (same for both models)"})
    epochs: int = field(default=20, metadata={"help": "epochs for each model (same budget)"})
    warmup_epochs: int = field(default=15, metadata={"help": "of those, epochs on frozen text vectors first"})
    patience: int = field(default=3, metadata={"help": "early stopping on validation NDCG@10 (both models)"})
    batch_size: int = field(default=64, metadata={"help": "windows per step and process"})
    lr: float = field(default=1e-3, metadata={"help": "heads and sequence tower"})
    encoder_lr: float = field(default=2e-4, metadata={"help": "LoRA weights"})
    train_eps: float = field(default=0.1, metadata={"help": "training perturbation, x mean item vector norm"})
    train_eps_grid: list = field(
        default_factory=list,
        metadata={"help": "training eps candidates; the best on validation NDCG@10 is kept (empty: train_eps)"},
    )
    train_norm: str = field(default="sign", metadata={"help": "sign (FGSM) | l2 (FGM / APR)"})
    adv_weight: float = field(default=1.0, metadata={"help": "lambda in L(clean) + lambda L(perturbed)"})
    train_where: str = field(
        default="items", metadata={"help": "what training perturbs: items (the vectors attacked) | users | both"}
    )
    attack_on: str = field(default="outputs", metadata={"help": "outputs (tower vectors) | tokens (item text)"})
    eps_grid: list = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.5], metadata={"help": "x mean norm"})

    def __post_init__(self):
        if self.train_norm not in ("sign", "l2"):
            raise ValueError(f"adversarial.train_norm: expected sign or l2, got {self.train_norm!r}")
        if self.attack_on not in ("outputs", "tokens"):
            raise ValueError(f"adversarial.attack_on: expected outputs or tokens, got {self.attack_on!r}")
        if self.train_where not in ("items", "users", "both"):
            raise ValueError(f"adversarial.train_where: expected items, users or both, got {self.train_where!r}")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "adversarial": AdversarialConfig}


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=config_help(SECTIONS), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML file under recipes/configs/")
    args, overrides = parser.parse_known_args()
    return load_config(SECTIONS, args.config, overrides)


def main():
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    cfg = parse_args()
    data_cfg, model_cfg, adv = cfg["data"], cfg["model"], cfg["adversarial"]
    if model_cfg.user_tower != "sequence":
        raise ValueError("model.user_tower: this recipe attacks the sequence user tower; set it to 'sequence'")
    if adv.attack_on == "tokens" and model_cfg.encoder is None:
        raise ValueError("adversarial.attack_on: 'tokens' needs a text encoder (model.encoder)")
    out = Path(adv.output_dir)
    accelerator = make_accelerator(LoopConfig())
    set_seed(adv.seed)

    # 1. Data: E1 leave-one-out
    with accelerator.main_process_first():
        data = load_data(data_cfg)
    split = leave_one_out(data)
    template = item_template(data, data_cfg)
    texts = template.render_all(data.items)

    # 2. Models: one initial state, trained twice (normal, adversarial) with the same budget
    initial, tokenizer = build_model(model_cfg, data.num_items)
    initial.mark_trained_items(np.unique(np.concatenate(split.train)))
    tokens = item_tokens(texts, tokenizer, model_cfg, initial) if initial.has_text else None
    examples = WindowExamples(all_targets(split.train), model_cfg.max_history)
    freq = torch.as_tensor(np.bincount(np.concatenate(split.train), minlength=data.num_items), dtype=torch.float32)
    loop = LoopConfig(
        seed=adv.seed,
        epochs=adv.epochs,
        batch_size=adv.batch_size,
        lr=adv.lr,
        encoder_lr=adv.encoder_lr,
        encoder_warmup_epochs=adv.warmup_epochs,
        patience=adv.patience,
        checkpoint_every=0,
    )
    validation = Validation(split.valid, data.num_items, tokens)
    models, costs, selection = {}, {}, {}
    candidates = [("normal", 0.0, adv.train_eps)]
    candidates += [("adversarial", adv.adv_weight, eps) for eps in (adv.train_eps_grid or [adv.train_eps])]
    for name, weight, eps in candidates:
        # 3. Train through the library loop, early-stopped on validation NDCG@10; the adversarial model's training
        #    eps is the grid value with the best validation NDCG@10 (the test split is not read here)
        model = copy.deepcopy(initial)
        adversarial = AdversarialSettings(eps, adv.train_norm, weight, adv.train_where) if weight else None
        objective = TrainingObjective(model, tokens, freq + 1, adversarial=adversarial)
        result = fit(objective, examples, loop, accelerator, validation=validation, desc=f"{name} eps {eps}")
        logger.info(f"{name} (eps {eps}): {result.train_seconds:.0f}s, valid NDCG@10 {result.best_valid_ndcg:.4f}")
        if weight:
            selection[str(eps)] = result.best_valid_ndcg
        if name not in costs or result.best_valid_ndcg > costs[name]["best_valid_ndcg@10"]:
            costs[name] = {**result.cost(), "best_valid_ndcg@10": result.best_valid_ndcg, "train_eps": eps}
            models[name] = model.eval()

    # 4. Evaluate: clean, FGSM / L2 attacks on the eps grid, random control of the same norm
    report = {
        "config": config_to_dict(cfg),
        "protocol": "E4 on the E1 test split, history masked",
        "costs": costs,
        "train_eps_validation": selection,
        "models": {},
    }
    for name, model in models.items():
        rows = attack_grid(model, split.test, tokens, adv, accelerator)
        report["models"][name] = rows
        logger.info(f"{name}: clean NDCG@10 {rows['clean']:.4f}")
    report["popularity_ndcg@10"] = evaluate_scores(torch.as_tensor(freq, dtype=torch.float64), split.test)["ndcg@10"]

    # 5. Save: both models, the report and its table
    if accelerator.is_main_process:
        for name, model in models.items():
            save_pretrained(
                model, out / name, model_cfg, data.item_ids, tokenizer=tokenizer, item_template=template.template
            )
        atomic_write_text(out / "report.json", json.dumps(report, indent=2))
        table = markdown(report)
        atomic_write_text(out / "report.md", table)
        print(table)
        print(f"report: {out / 'report.json'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group before exit


def attack_grid(model, events, tokens, adv: AdversarialConfig, accelerator) -> dict:
    """NDCG@10 clean and under every (attack, eps) of the grid. The gradient is that of the test-set loss, taken
    once per model; each eps then scales the same step (sign or L2 direction)."""
    text = compute_text_vectors(model, tokens, 256, accelerator, None) if model.has_text else None
    items = compute_item_vectors(model, text, model.num_items)
    clean = evaluate(model, events, items, mask_history=True, accelerator=accelerator)["ndcg@10"]
    out = {"clean": clean, "attacks": []}
    histories = [e.history for e in events]
    targets = torch.as_tensor([e.target for e in events])
    if adv.attack_on == "outputs":
        base, grad = items, _grad_wrt_items(model, histories, targets, items)
        scale = items.norm(dim=-1).mean()
    else:
        ids, mask = tokens.batch(range(len(tokens)))
        base = model.item_encoder.model.get_input_embeddings()(ids).detach()
        grad = _grad_wrt_tokens(model, histories, targets, base, mask)
        scale = base[mask.bool()].norm(dim=-1).mean()
    for eps_rel in adv.eps_grid:
        eps = float(eps_rel * scale)
        for attack in ("sign", "l2", "random_sign", "random_l2"):
            norm = attack.removeprefix("random_")
            gen = torch.Generator().manual_seed(adv.seed)
            delta = (
                random_perturbation(grad, eps, norm, gen)
                if attack.startswith("random")
                else perturbation(grad, eps, norm)
            )
            if adv.attack_on == "outputs":
                attacked = base + delta
            else:
                with torch.no_grad():
                    pooled = model.item_encoder(None, mask, inputs_embeds=base + delta * mask.unsqueeze(-1))
                attacked = compute_item_vectors(model, pooled, model.num_items)
            ndcg = _ndcg(model, histories, targets, attacked)
            out["attacks"].append(
                {
                    "attack": attack,
                    "eps_rel": eps_rel,
                    "eps": eps,
                    "ndcg@10": ndcg,
                    "relative_drop": (clean - ndcg) / clean if clean else 0.0,
                }
            )
    return out


def _user_vectors(model, histories, items):
    hist, hmask = pad_histories(histories, model.max_history)
    return model.encode_users_sequence(items[hist] * hmask.unsqueeze(-1), hmask)


def _loss(model, histories, targets, items):
    return torch.nn.functional.cross_entropy(
        model.score(_user_vectors(model, histories, items), items, torch.arange(len(items))), targets, reduction="sum"
    )


def _grad_wrt_items(model, histories, targets, items):
    items = items.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_loss(model, histories, targets, items), items)
    return grad


def _grad_wrt_tokens(model, histories, targets, embeds, mask):
    embeds = embeds.detach().requires_grad_(True)
    with torch.enable_grad():
        pooled = model.item_encoder(None, mask, inputs_embeds=embeds)
        items = model.item_vectors(torch.arange(model.num_items), pooled)
        (grad,) = torch.autograd.grad(_loss(model, histories, targets, items), embeds)
    return grad * mask.unsqueeze(-1)


@torch.no_grad()
def _ndcg(model, histories, targets, items) -> float:
    ranks = []
    for start in range(0, len(histories), 256):
        h = histories[start : start + 256]
        scores = model.score(_user_vectors(model, h, items), items, torch.arange(len(items)))
        masked = torch.zeros_like(scores, dtype=torch.bool)
        for row, hist in enumerate(h):
            masked[row, list(hist)] = True
        ranks.append(target_ranks(scores, targets[start : start + 256], masked))
    return metrics_from_ranks(torch.cat(ranks), (10,))["ndcg@10"]


def markdown(report: dict) -> str:
    names = list(report["models"])
    lines = [
        "| attack | eps (x mean norm) | " + " | ".join(f"{n} NDCG@10 (drop)" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    lines.append("| clean | 0 | " + " | ".join(f"{report['models'][n]['clean']:.4f}" for n in names) + " |")
    first = report["models"][names[0]]["attacks"]
    for k, row in enumerate(first):
        cells = [
            f"{report['models'][n]['attacks'][k]['ndcg@10']:.4f} "
            f"({report['models'][n]['attacks'][k]['relative_drop']:+.1%})"
            for n in names
        ]
        lines.append(f"| {row['attack']} | {row['eps_rel']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
