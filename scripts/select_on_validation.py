"""Choose defaults on validation: run recipes/train.py once per variant and rank the variants by validation NDCG@10.

    python scripts/select_on_validation.py --grid loss_ml100k
    python scripts/select_on_validation.py --grid loss_ml100k --only idonly_full --minutes 2

A grid is a list of variants, each a config plus overrides. Every run trains under the same wall-clock budget
(`--minutes`, evaluation excluded; or, on a shared machine where wall-clock budgets are not comparable, an epoch
budget `--epochs` with `--minutes 0`) with early stopping on validation (`--patience`); the ranking and any
decision use the validation column only. Test metrics (history masked) are written too, for the record, and must not
be used to choose. Finished runs are reused (their metrics.json). The table, docs/benchmarks/selection_<grid>.json (a
`textrec.evaluate.results` file, merged with its earlier rows) and its markdown, is rewritten after every run so that
partial results survive.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.evaluate.results import ResultsFile, choose_on_validation, environment, summarise, this_command  # noqa: E402
from textrec.evaluate.runs import run_once, train_run_rows  # noqa: E402
from textrec.evaluate.tables import header, summary_table  # noqa: E402

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
    # LoRA on the top k layers from the cached lower layers (issue 23), many more live candidates per step; the same
    # join rule as refresh_ml100k (whose refresh_40 row is the plain-LoRA reference)
    "cached_lora_ml100k": {
        f"top{k}_live{live}": (
            "ml100k_minilm.yaml",
            [*TEXT_SETTINGS, *LORA_PLATEAU, f"model.lora_top_layers={k}", f"training.max_live_items={n}"],
        )
        for k, live, n in ((2, 256, 256), (2, "all", 100000), (1, "all", 100000))
    },
}


def measure(name: str, config: str, overrides: list[str], out: Path, minutes: float, budget: list[str], env: dict):
    """One variant (reused once finished): its row and per-event test ranks with history masked."""
    command = [sys.executable, ROOT / "recipes" / "train.py", "--config", CONFIGS / config]
    command += [
        f"training.output_dir={out / name}",
        f"training.max_train_minutes={minutes}",
        "training.progress=false",
    ]
    done = run_once([*command, *budget, *overrides], out / name, out / f"{name}.log", cwd=ROOT)
    ran = json.loads(done.read_text())["config"]
    dataset = ran["data"].get("name") or Path(ran["data"]["path"]).name
    rows, ranks = train_run_rows(out / name, dataset, name, name, config, overrides, ran["training"]["seed"], env)
    return [r for r in rows if r.slice == "masked"], {k: v for k, v in ranks.items() if k.endswith("/masked")}


def winners(file: ResultsFile) -> dict[str, str]:
    """The best variant on validation per model family (config), never across families."""
    summaries = summarise(file.rows)
    families = {r.config: {q.method for q in file.rows if q.config == r.config} for r in file.rows}
    return {config: choose_on_validation(summaries, methods, "masked") for config, methods in families.items()}


def markdown(file: ResultsFile, grid: str) -> str:
    """The variants ranked by validation NDCG@10 (test beside it, for the record), and each family's winner."""
    notes = file.notes
    summaries = sorted(summarise(file.rows), key=lambda s: -s.mean.get("valid_ndcg@10", float("-inf")))

    def column(fn):
        return lambda s: ", ".join(dict.fromkeys(fn(r) for r in file.rows if r.method == s.method)) or "-"

    def best_epoch(r) -> str:  # the tested weights' epoch, and for a LoRA row the epoch LoRA joined after
        best, joined = r.extra.get("best_epoch"), r.extra.get("encoder_warmup_epochs")
        return ("-" if best is None else str(best)) + ("" if joined is None else f" ({joined})")

    extra = [
        ("config", column(lambda r: r.config)),
        ("overrides", column(lambda r: " ".join(r.overrides) or "-")),
        ("best epoch (encoder joins after)", column(best_epoch)),
        ("stopped", column(lambda r: str(r.extra.get("stopped", "-")))),
    ]
    title = (
        f"Selection grid `{grid}`: budget per run {notes.get('minutes')} min (0: none), epochs "
        f"{notes.get('epochs') or 'of the config'}, patience {notes.get('patience') or 'of the config'}. Ranked by "
        "validation; test (history masked) is recorded only"
    )
    best = "; ".join(f"{config}: `{method}`" for config, method in winners(file).items())
    table = summary_table(summaries, metrics=(("test NDCG@10", "ndcg@10"),), slices=["masked"], extra=extra)
    return f"{header(title, file)}\n\n{table}\n\nBest on validation per config: {best}.\n"


def main() -> None:
    logging.basicConfig(format="%(message)s", level=logging.INFO)  # the runs' progress (textrec.evaluate.runs)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True, choices=sorted(GRIDS))
    parser.add_argument("--only", action="append", help="run only these variants (repeatable)")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per run")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget per run (default: the config's)")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: the config's)")
    parser.add_argument("--out", default="outputs/selection")
    args = parser.parse_args()
    path = ROOT / "docs" / "benchmarks" / f"selection_{args.grid}.json"
    file = ResultsFile.load(path)
    file.add_command(this_command())
    file.notes.update(grid=args.grid, minutes=args.minutes, epochs=args.epochs, patience=args.patience)
    out, env = ROOT / args.out / args.grid, environment()
    budget = [f"training.epochs={args.epochs}"] if args.epochs else []
    budget += [f"training.patience={args.patience}"] if args.patience else []
    for name, (config, overrides) in GRIDS[args.grid].items():
        if args.only and name not in args.only and not (out / name / "metrics.json").is_file():
            continue  # not asked for and not finished; finished runs of other variants stay in the table
        rows, ranks = measure(name, config, overrides, out, args.minutes, budget, env)
        file.merge(rows)
        file.ranks.update(ranks)
        file.save(path, markdown(file, args.grid))
    for config, method in winners(file).items():
        print(f"best on validation ({config}): {method}")


if __name__ == "__main__":
    main()
