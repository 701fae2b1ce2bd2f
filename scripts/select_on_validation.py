"""Choose defaults on validation: run recipes/train.py once per variant and rank the variants by validation NDCG@10.

    python scripts/select_on_validation.py --grid loss_ml100k
    python scripts/select_on_validation.py --grid loss_ml100k --only idonly_full --minutes 2

A grid is a list of variants, each a config plus overrides. Every run trains under the same wall-clock budget
(`--minutes`, evaluation excluded; or, on a shared machine where wall-clock budgets are not comparable, an epoch
budget `--epochs` with `--minutes 0`) with early stopping on validation (`--patience`); the ranking and any
decision use the validation column only. Test metrics are written too, for the record, and must not be used to choose.
Finished runs are reused (their metrics.json); JSON rows and a markdown table go to
docs/benchmarks/selection_<grid>.{json,md}, rewritten after every run so that partial results survive.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "configs"
TEXT_ONLY = ["model.id_embedding=false"]
FULL = ["training.full_softmax_items=20000"]  # every ml-100k item a candidate
TEXT_SETTINGS = ["model.id_dropout=0.5", "model.item_bias=true", "model.user_content=5"]
LORA_WARM45 = ["training.encoder_warmup_epochs=45", "training.epochs=80"]
LORA_PLATEAU = ["training.encoder_warmup_epochs=60", "training.encoder_warmup_patience=5", "training.epochs=80"]
ALL = "[query,key,value,dense]"  # every linear layer of a BERT block (peft's default for BERT: query, value)
GRIDS = {
    # The loss and fusion questions of the text-quality issue, on frozen MiniLM and ID-only models alike:
    # sampled softmax (inclusion-probability logQ) vs exact full softmax, with and without a per-item bias.
    "loss_ml100k": {
        # most informative first: a run that the session's end cuts off leaves the earlier rows
        "textid_full_bias": ("ml100k_minilm_frozen.yaml", [*FULL, "model.item_bias=true"]),
        "textid_sampled": ("ml100k_minilm_frozen.yaml", ["training.full_softmax_items=0"]),
        "text_full_bias": ("ml100k_minilm_frozen.yaml", [*TEXT_ONLY, *FULL, "model.item_bias=true"]),
        "text_sampled": ("ml100k_minilm_frozen.yaml", [*TEXT_ONLY, "training.full_softmax_items=0"]),
        "idonly_full_bias": ("ml100k_idonly.yaml", [*FULL, "model.item_bias=true"]),
        "idonly_sampled": ("ml100k_idonly.yaml", ["training.full_softmax_items=0"]),
        "textid_full": ("ml100k_minilm_frozen.yaml", FULL),
        "text_full": ("ml100k_minilm_frozen.yaml", [*TEXT_ONLY, *FULL]),
        "idonly_full": ("ml100k_idonly.yaml", FULL),
    },
    # LoRA's encoder learning rate and target modules (issue 13), on the text settings of the ml-100k headline row
    # (ids + bias, id dropout 0.5, content path 5) with LoRA joining after 45 frozen epochs; the frozen row is the
    # reference. Run with the config's 10-minute budget: --minutes 10.
    "lora_ml100k": {
        "frozen": ("ml100k_minilm_frozen.yaml", [*TEXT_SETTINGS, "training.epochs=80"]),
        "lora_qv_lr2e-4": ("ml100k_minilm.yaml", [*TEXT_SETTINGS, *LORA_WARM45]),
        "lora_qv_lr5e-4": ("ml100k_minilm.yaml", [*TEXT_SETTINGS, *LORA_WARM45, "training.encoder_lr=0.0005"]),
        # the warm-up ends when it stalls (patience 5) and LoRA joins from its best weights: a validation gain after
        # the join is the adapter's own (training.encoder_warmup_patience)
        "lora_qv_lr2e-4_plateau": ("ml100k_minilm.yaml", [*TEXT_SETTINGS, *LORA_PLATEAU]),
        "lora_all_lr2e-4": ("ml100k_minilm.yaml", [*TEXT_SETTINGS, *LORA_WARM45, f"model.lora_target_modules={ALL}"]),
    },
    # The temperature (issue 13): fixed values and a learned one, on the frozen headline model
    "temperature_ml100k": {
        "t0.05": ("ml100k_minilm_frozen.yaml", [*TEXT_SETTINGS, "training.epochs=80"]),
        "t0.02": ("ml100k_minilm_frozen.yaml", [*TEXT_SETTINGS, "training.epochs=80", "model.temperature=0.02"]),
        "t0.1": ("ml100k_minilm_frozen.yaml", [*TEXT_SETTINGS, "training.epochs=80", "model.temperature=0.1"]),
        "t0.2": ("ml100k_minilm_frozen.yaml", [*TEXT_SETTINGS, "training.epochs=80", "model.temperature=0.2"]),
        "learned_from_0.05": (
            "ml100k_minilm_frozen.yaml",
            [*TEXT_SETTINGS, "training.epochs=80", "model.learn_temperature=true"],
        ),
        # at 0.1 the text settings chosen at 0.05 (id dropout, content path) are asked again
        "textid_bias_t0.1": (
            "ml100k_minilm_frozen.yaml",
            ["model.item_bias=true", "training.epochs=80", "model.temperature=0.1"],
        ),
        "textid_bias_content5_t0.1": (
            "ml100k_minilm_frozen.yaml",
            ["model.item_bias=true", "model.user_content=5", "training.epochs=80", "model.temperature=0.1"],
        ),
        # the ID-only reference gets the same choice, so that a text win is not a tuning win
        "idonly_t0.05": ("ml100k_idonly.yaml", ["model.seq_position_std=0.02"]),
        "idonly_t0.1": ("ml100k_idonly.yaml", ["model.seq_position_std=0.02", "model.temperature=0.1"]),
        "idonly_t0.2": ("ml100k_idonly.yaml", ["model.seq_position_std=0.02", "model.temperature=0.2"]),
    },
    # How often LoRA's cached item vectors are recomputed (issue 13): history and non-live candidates lag the adapter
    # by up to N steps. LoRA joins from the stalled warm-up's best weights; run with an epoch budget (--minutes 0),
    # so that a shared CPU changes the seconds, not the result.
    "refresh_ml100k": {
        f"refresh_{n}": ("ml100k_minilm.yaml", [*TEXT_SETTINGS, *LORA_PLATEAU, f"training.cache_refresh_steps={n}"])
        for n in (10, 40, 160)
    },
}


def run(name: str, config: str, overrides: list[str], out: Path, minutes: float, budget: list[str]) -> dict:
    metrics = out / name / "metrics.json"
    if metrics.is_file():
        print(f"[{name}] reusing {metrics}", flush=True)
        return json.loads(metrics.read_text())
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "train.py"),
        "--config",
        str(CONFIGS / config),
        f"training.output_dir={out / name}",
        f"training.max_train_minutes={minutes}",
        "training.progress=false",
        *budget,
        *overrides,
    ]
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"[{name}] failed ({proc.returncode}); see {out / f'{name}.log'}")
    print(f"[{name}] done in {time.perf_counter() - started:.0f}s", flush=True)
    return json.loads(metrics.read_text())


def best_epoch(summary: dict) -> dict:
    """The epoch of the best validation (the weights that were tested) and the last epoch on frozen text vectors:
    a LoRA run whose best epoch is not after its warm-up was tested without its adapter's training."""
    curve = summary.get("curve") or []
    best = max(curve, key=lambda p: p["valid_ndcg@10"], default={}).get("epoch")
    model, training = summary["config"].get("model", {}), summary["config"]["training"]
    encoder_trains = model.get("encoder") and model.get("train_mode") != "frozen"
    # the epoch it joined after (recorded since 2026-12-03), else the configured warm-up
    warmup = summary.get("encoder_joined_after_epoch", training.get("encoder_warmup_epochs", 0))
    return {"best_epoch": best, "encoder_warmup_epochs": warmup if encoder_trains else None}


def row(name: str, config: str, overrides: list[str], summary: dict) -> dict:
    test = summary["results"]["test_mask=True"]
    return {
        **best_epoch(summary),
        "variant": name,
        "config": config,
        "overrides": overrides,
        "valid_ndcg@10": summary["best_valid_ndcg@10"],
        "test_ndcg@10": test["ndcg@10"],
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "stopped": summary["stopped"],
    }


def write(rows: list[dict], meta: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"Selection grid `{meta['grid']}`: budget per run {meta['minutes']} min (0: none), epochs "
        f"{meta['epochs'] or 'of the config'}, patience {meta['patience'] or 'of the config'}; {meta['machine']}, "
        f"{meta['date']}.",
        f"Command: `{meta['command']}`. Rank by validation; test is recorded only.",
        "",
        "| variant | overrides | valid NDCG@10 | test NDCG@10 | epochs | best epoch (encoder joins after) | train s "
        "| stopped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r["valid_ndcg@10"]):
        joins = f" ({r['encoder_warmup_epochs']})" if r.get("encoder_warmup_epochs") is not None else ""
        best = "-" if r.get("best_epoch") is None else r["best_epoch"]
        lines.append(
            f"| {r['variant']} | {' '.join(r['overrides']) or '-'} | {r['valid_ndcg@10']:.4f} | "
            f"{r['test_ndcg@10']:.4f} | {r['epochs']:.1f} | {best}{joins} | "
            f"{r['train_seconds']:.0f} | {r['stopped']} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True, choices=sorted(GRIDS))
    parser.add_argument("--only", action="append", help="run only these variants (repeatable)")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per run")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget per run (default: the config's)")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: the config's)")
    parser.add_argument("--out", default="outputs/selection")
    args = parser.parse_args()
    import torch

    meta = {
        "grid": args.grid,
        "minutes": args.minutes,
        "epochs": args.epochs,
        "patience": args.patience,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU only",
        "command": "python scripts/select_on_validation.py " + " ".join(sys.argv[1:]),
    }
    out = ROOT / args.out / args.grid
    out.mkdir(parents=True, exist_ok=True)
    budget = [f"training.epochs={args.epochs}"] if args.epochs else []
    budget += [f"training.patience={args.patience}"] if args.patience else []
    rows = []
    for name, (config, overrides) in GRIDS[args.grid].items():
        if args.only and name not in args.only and not (out / name / "metrics.json").is_file():
            continue  # not asked for and not finished; finished runs of other variants stay in the table
        rows.append(row(name, config, overrides, run(name, config, overrides, out, args.minutes, budget)))
        write(rows, meta, ROOT / "docs" / "benchmarks" / f"selection_{args.grid}")
    for config in dict.fromkeys(r["config"] for r in rows):  # one winner per model family (config), not across
        best = max((r for r in rows if r["config"] == config), key=lambda r: r["valid_ndcg@10"])
        print(f"best on validation ({config}): {best['variant']} ({best['valid_ndcg@10']:.4f})")


if __name__ == "__main__":
    main()
