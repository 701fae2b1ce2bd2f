"""One sequence-tower training step at the ML-1M shape: what the scoring fusion saves, on synthetic batches.

    python scripts/benchmark_sequence_step.py [--steps 8] [--threads 1]

An ID-only two-tower model (3,706 items, dim 64, item bias, 2 layers) trains on batches of B windows of L items
drawn by a skewed popularity, with the default loss (in-batch sampled softmax over the batch's distinct targets,
expected-count logQ). Each configuration times forward + backward + AdamW step, twice:
  * fused (today): 1/temperature scales the users and bias - log q enters the product (`torch.addmm`), and
    distinct candidates skip the accidental-hit mask;
  * unfused (the earlier code, rebuilt here): logits / temperature + bias - log q as separate passes over the
    [targets, candidates] logits, then the hit mask.
Both compute the same loss (checked on the first batch). Merges a row per shape (`textrec-results/1`, `slice` =
BxL) into docs/benchmarks/sequence_step.json and regenerates sequence_step.md.
On a shared machine run with --threads 1 and compare the ratio only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textrec.evaluate.results import Result, ResultsFile, environment, record  # noqa: E402
from textrec.evaluate.tables import header, number, table  # noqa: E402
from textrec.model.towers import TwoTowerModel  # noqa: E402
from textrec.train.objectives import TrainingObjective  # noqa: E402

NUM_ITEMS, DIM = 3706, 64


def unfused_score(model):
    def score(users, items, item_ids=None, offset=None):
        users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        logits = users @ items.T / model.temperature
        if item_ids is not None:
            logits = logits + model.bias(item_ids)
        return logits if offset is None else logits + offset

    return score


def unfused_loss(logits, target_columns, candidate_ids, target_ids, log_q=None):
    hits = candidate_ids[None, :] == target_ids[:, None]
    hits[torch.arange(len(target_columns)), target_columns] = False
    return F.cross_entropy(logits.masked_fill(hits, torch.finfo(logits.dtype).min).float(), target_columns)


def time_steps(fused: bool, batch: int, length: int, steps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = TwoTowerModel(NUM_ITEMS, DIM, id_embedding=True, max_history=length, item_bias=True)
    freq = torch.as_tensor(rng.random(NUM_ITEMS) ** 3, dtype=torch.float32)
    objective = TrainingObjective(model, None, freq)
    if not fused:
        model.score = unfused_score(model)
        objective.softmax.forward = unfused_loss
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    p = (freq / freq.sum()).numpy()
    windows = [torch.as_tensor(rng.choice(NUM_ITEMS, size=(batch, length + 1), p=p)) for _ in range(steps + 2)]
    first_loss, started = None, None
    for i, w in enumerate(windows):
        if i == 2:  # two warm-up steps
            started = time.perf_counter()
        loss = objective(w[:, 1:], w[:, :-1], seed=i)
        first_loss = float(loss.detach()) if first_loss is None else first_loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - started) / steps, first_loss


def markdown(file: ResultsFile) -> str:
    versions = {r.extra["torch"] for r in file.rows if "torch" in r.extra} | {file.notes.get("torch")} - {None}
    title = "Sequence-tower step, ML-1M shape, synthetic batches, torch " + ", ".join(sorted(versions))
    lines = []
    for r in file.rows:
        m = r.metrics
        lines.append(
            [f"{r.extra['batch']} x {r.extra['length']}", number(m["unfused_s_per_step"], 3)]
            + [number(m["fused_s_per_step"], 3), f"{number(m['speedup'], 2)}x", number(m["fused_targets_per_s"], 0)]
            + [number(m["ml1m_epoch_s_estimate"], 0)]
        )
    headers = ["B x L", "unfused s/step", "fused s/step", "speedup", "targets/s", "ML-1M epoch estimate (s)"]
    return header(title, file) + "\n\n" + table(headers, lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", default="64x200,32x200", help="BxL batches to time")
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks/sequence_step"), help="results file (.json, .md)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env, rows = environment(), []
    for shape in args.shapes.split(","):
        batch, length = (int(v) for v in shape.split("x"))
        fused, loss_fused = time_steps(True, batch, length, args.steps)
        unfused, loss_unfused = time_steps(False, batch, length, args.steps)
        if abs(loss_fused - loss_unfused) > 1e-4 * abs(loss_unfused):
            raise SystemExit(f"the fused loss {loss_fused} differs from the unfused {loss_unfused}")
        targets = batch * length
        metrics = {
            "fused_s_per_step": fused,
            "unfused_s_per_step": unfused,
            "speedup": unfused / fused,
            "fused_targets_per_s": targets / fused,
            "ml1m_epoch_s_estimate": 982_089 / (targets / fused),  # ML-1M E1 training targets per epoch
        }
        extra = {"batch": batch, "length": length, "items": NUM_ITEMS, "dim": DIM, "torch": torch.__version__}
        rows.append(Result("synthetic", "sequence_step", "sequence_tower_step", metrics, slice=f"{batch}x{length}",
                           steps=args.steps, extra=extra, **env))  # fmt: skip
        print(shape, metrics, flush=True)
    out = Path(args.out).with_suffix(".json")
    record(out, rows, markdown)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
