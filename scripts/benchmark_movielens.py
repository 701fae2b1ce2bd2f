"""Benchmark on MovieLens under protocol E1 (both mask variants): popularity, ID-only and the text models, 3 seeds.

    python scripts/prepare_movielens.py && python scripts/benchmark_movielens.py --dataset ml-100k
    python scripts/prepare_movielens.py --dataset ml-1m
    python scripts/benchmark_movielens.py --dataset ml-1m --seeds 0
    python scripts/benchmark_movielens.py --dataset ml-100k --only id_only --only text_frozen --seeds 0 1 2
    python scripts/benchmark_movielens.py --dataset ml-100k --budget-scale 4     # longer budgets (e.g. on a GPU)

Every run is recipes/train.py with its config's budget (`training.max_train_minutes` times --budget-scale, and
`training.epochs`; evaluation is not part of the budget) and early stopping on validation; the same leave-one-out
split for every seed (the seed changes initialisation and batch order). Finished runs are reused (delete a run folder
or pass --force to redo one), and the table is rewritten after every run, so a cut-off benchmark keeps what it
finished.

The table (`docs/benchmarks/<table>.json`, a `textrec.evaluate.results` file: one row per run, seed and slice
masked / unmasked) is merged, never replaced: rows whose run folder is gone (outputs/ is not committed) are kept, each
run's per-event test ranks go to `<table>.ranks.json`, and an earlier comparison that cannot be recomputed is kept,
marked `carried`. A row measured under another definition of its run (other overrides) is refused. Comparisons are
paired bootstrap 95% intervals of per-event NDCG@10 averaged over the seeds both runs share: the best text model
against the best ID-only one and LoRA against frozen (best = highest mean validation NDCG@10 with history masked,
never test), and every --compare pair.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "configs"
sys.path.insert(0, str(ROOT))
from textrec.evaluate.results import ResultsFile, choose_on_validation, compare, environment, summarise, this_command  # noqa: E402
from textrec.evaluate.runs import popularity_rows, run_once, train_run_rows  # noqa: E402
from textrec.evaluate.tables import comparison_table, header, summary_table  # noqa: E402

# The rows measured before 2026-11-25 ran with torch's N(0, 1) position embeddings; re-runs keep that init.
OLD_POSITIONS = ["model.seq_position_std=null"]
# the text settings chosen on the ml-100k E1-cold validation, and the epoch cap they ran under on ml-100k
ID_DROPOUT_CONTENT = ["model.id_dropout=0.5", "model.item_bias=true", "model.user_content=5"]
EPOCH_CAP = ["training.max_train_minutes=0", "training.epochs=80"]
RUNS = {
    # dataset: {name: (model label, config, extra overrides, kind)}; kind: id | text_frozen | text_lora | text
    "ml-100k": {
        "id_only": ("textrec ID-only (sequence)", "ml100k_idonly.yaml", OLD_POSITIONS, "id"),
        "text_frozen": (
            "MiniLM frozen + ids, sequence user",
            "ml100k_minilm_frozen.yaml",
            OLD_POSITIONS,
            "text_frozen",
        ),
        "text_frozen_iddrop": (
            "MiniLM frozen + ids + bias, id dropout 0.5, sequence user",
            "ml100k_minilm_frozen.yaml",
            # id dropout converges in more epochs: an epoch cap (80, patience 10) instead of the 8-minute budget
            ["model.id_dropout=0.5", "model.item_bias=true"] + EPOCH_CAP + OLD_POSITIONS,
            "text_frozen",
        ),
        "text_frozen_content": (
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml100k_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT + EPOCH_CAP + OLD_POSITIONS,
            "text_frozen",
        ),
        # position embeddings initialised at std 0.02 instead of torch's N(0, 1) (model.seq_position_std)
        "id_only_pos002": (
            "textrec ID-only (sequence), positions std 0.02",
            "ml100k_idonly.yaml",
            ["model.seq_position_std=0.02"],
            "id",
        ),
        "text_frozen_content_pos002": (
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, positions std 0.02, sequence user",
            "ml100k_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT + ["model.seq_position_std=0.02"] + EPOCH_CAP,
            "text_frozen",
        ),
        # temperature 0.1 instead of 0.05, chosen on seed-42 validation (selection_temperature_ml100k); ID-only gets
        # the same choice, and each side's row is picked by validation
        "id_only_t01": (
            "textrec ID-only (sequence), positions std 0.02, temperature 0.1",
            "ml100k_idonly.yaml",
            # an epoch budget (300, patience 10) instead of 8 minutes: at 0.1 it converges later, and a shared
            # CPU must change the seconds, not the result
            ["model.seq_position_std=0.02", "model.temperature=0.1", "training.max_train_minutes=0"],
            "id",
        ),
        "text_frozen_content_t01": (
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, positions std 0.02, temperature 0.1",
            "ml100k_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT + ["model.seq_position_std=0.02", "model.temperature=0.1"] + EPOCH_CAP,
            "text_frozen",
        ),
        "text_lora": ("MiniLM + LoRA + ids, sequence user", "ml100k_minilm.yaml", [], "text_lora"),
        # LoRA against text_frozen_content_pos002 (the same model settings): the config's 10-minute budget, more
        # than the frozen runs use before they stop early
        "text_lora_content_pos002": (
            "MiniLM + LoRA + ids + bias, id dropout 0.5, content path 5, positions std 0.02, sequence user",
            "ml100k_minilm.yaml",
            ID_DROPOUT_CONTENT + ["model.seq_position_std=0.02"],
            "text_lora",
        ),
        # the same, LoRA joining after 45 epochs on frozen text vectors (chosen on seed 0 validation,
        # outputs/probe/lora_warm45_seed0): the frozen model is nearly converged when LoRA starts
        "text_lora_content_warm45": (
            "MiniLM + LoRA after 45 frozen epochs + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml100k_minilm.yaml",
            ID_DROPOUT_CONTENT + ["training.encoder_warmup_epochs=45", "training.epochs=80"],
            "text_lora",
        ),
        "text_user": ("MiniLM + LoRA, text user tower", "ml100k_minilm_text_user.yaml", [], "text"),
        "smollm2_frozen": ("SmolLM2-135M frozen + ids, sequence user", "ml100k_smollm2.yaml", [], "text"),
        # the decoder-only encoder with the headline row's settings (text_frozen_content_pos002), vectors cached
        "smollm2_frozen_content": (
            "SmolLM2-135M frozen + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml100k_smollm2.yaml",
            ID_DROPOUT_CONTENT + EPOCH_CAP + ["training.text_cache_dir=outputs/text_cache"],
            "text",
        ),
    },
    "ml-1m": {
        "id_only": ("textrec ID-only (sequence)", "ml1m_idonly.yaml", [], "id"),
        "text_frozen": ("MiniLM frozen + ids, sequence user", "ml1m_minilm_frozen.yaml", [], "text_frozen"),
        "text_frozen_content": (  # the configuration chosen on ml-100k validation, under the ML-1M time budget
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml1m_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT,
            "text_frozen",
        ),
        # LoRA against text_frozen (the best text model on validation), same budget: 15 epochs on frozen text
        # vectors (about 25 of the 40 minutes), then LoRA with ml100k_minilm.yaml's encoder settings; not tuned on
        # ML-1M (one LoRA epoch costs about 2.5 frozen ones here)
        "text_lora": (
            "MiniLM + LoRA + ids, sequence user",
            "ml1m_minilm_frozen.yaml",
            [
                "model.train_mode=lora",
                "training.encoder_warmup_epochs=15",
                "training.encoder_lr=0.0002",
                "training.max_live_items=64",
                "training.cache_refresh_steps=40",
            ],
            "text_lora",
        ),
        # temperature 0.1, the choice of ml-100k validation (selection_temperature_ml100k), for both sides; ML-1M's
        # own validation prefers 0.05 for both
        "id_only_t01": (
            "textrec ID-only (sequence), temperature 0.1",
            "ml1m_idonly.yaml",
            ["model.temperature=0.1"],
            "id",
        ),
        "text_frozen_t01": (
            "MiniLM frozen + ids, sequence user, temperature 0.1",
            "ml1m_minilm_frozen.yaml",
            ["model.temperature=0.1"],
            "text_frozen",
        ),
        # decoder-only encoder, last-token pooling, vectors computed once (as ml100k_smollm2.yaml)
        "smollm2_frozen": (
            "SmolLM2-135M frozen + ids, sequence user",
            "ml1m_minilm_frozen.yaml",
            ["model.encoder=smollm2-135m", "model.pooling=last", "training.eval_batch_size=128"],
            "text",
        ),
    },
}
SLICES = ("masked", "unmasked")
# comparison: (kinds of a, kinds of b); each side is the best of its kinds on validation
CHOSEN = {
    "best text vs ID-only": ({"text_frozen", "text_lora", "text"}, {"id"}),
    "LoRA vs frozen": ({"text_lora"}, {"text_frozen"}),
}


def measure(args, out_root: Path, name: str, seed: int, env: dict):
    """One run of RUNS (reused once finished): its E1 rows, marked with the run's kind, and per-event ranks."""
    label, config, overrides, kind = RUNS[args.dataset][name]
    folder = out_root / f"{name}_seed{seed}"
    minutes = yaml.safe_load((CONFIGS / config).read_text())["training"].get("max_train_minutes", 0)
    command = [*args.launcher.split(), ROOT / "recipes" / "train.py", "--config", CONFIGS / config]
    command += [f"training.output_dir={folder}", f"training.max_train_minutes={float(minutes) * args.budget_scale}"]
    command += [f"training.seed={seed}", "training.progress=false", *overrides]
    force = args.force and (not args.only or name in args.only)
    run_once(command, folder, out_root / f"{name}_seed{seed}.log", done="ranks.json", force=force, cwd=ROOT)
    rows, ranks = train_run_rows(folder, args.dataset, name, label, config, overrides, seed, env)
    return marked(rows, kind), ranks


def marked(rows: list, kind: str) -> list:
    """Rows marked with their run's kind (id, text_frozen, text_lora, text, popularity): the comparisons' pools."""
    for r in rows:
        r.extra["kind"] = kind
    return rows


def refuse_redefined(file: ResultsFile, runs: dict, path: Path) -> None:
    """A row measured under other overrides than RUNS now defines for its run must not be merged with new ones."""
    for r in file.rows:
        defined = runs.get(r.method)
        if defined and r.extra.get("overrides_recorded", True) and r.overrides != defined[2]:
            raise SystemExit(
                f"{path}: run {r.method!r} seed {r.seed} was measured with overrides {r.overrides}, but RUNS now "
                f"defines {defined[2]}: give the changed run a new name, or use another --table"
            )


def comparisons(file: ResultsFile, dataset: str, pairs) -> list:
    """The CHOSEN pairs (each side chosen on validation) and the named `pairs`, from the stored ranks."""
    summaries = summarise(file.rows)
    kinds = {r.method: r.extra.get("kind") for r in file.rows}

    def best(wanted):
        return choose_on_validation(summaries, [m for m, k in kinds.items() if k in wanted], "masked")

    chosen = [(name, best(a), best(b)) for name, (a, b) in CHOSEN.items()] + [(f"{a} vs {b}", a, b) for a, b in pairs]
    return [c for name, a, b in chosen if a and b for c in compare(file, name, dataset, a, b, SLICES)]


def markdown(file: ResultsFile, dataset: str) -> str:
    """The summary over seeds (RUNS order) with each seed's best validation epoch, then the comparisons."""
    order = {m: i for i, m in enumerate(["popularity", *RUNS.get(dataset, {})])}
    summaries = sorted(summarise(file.rows), key=lambda s: order.get(s.method, len(order)))

    def best_epochs(s) -> str:  # the tested weights' epoch, and for a LoRA row the epoch LoRA joined after
        if s.method == "popularity":
            return "-"
        rows = sorted((r for r in file.rows if (r.method, r.slice) == (s.method, s.slice)), key=lambda r: str(r.seed))
        epochs = [(r.extra.get("best_epoch"), r.extra.get("encoder_warmup_epochs")) for r in rows]
        return ", ".join(("?" if e is None else str(e)) + ("" if j is None else f" ({j})") for e, j in epochs)

    title = f"{dataset}, protocol E1 (leave-one-out, full ranking, pessimistic ties)"
    parts = [
        header(title, file),
        summary_table(summaries, slices=SLICES, extra=[("best epochs (encoder joins after)", best_epochs)]),
    ]
    if file.comparisons:
        parts.append(comparison_table(file.comparisons))
    return "\n\n".join(parts) + "\n"


def write(file: ResultsFile, path: Path, dataset: str, pairs) -> str:
    file.set_comparisons(comparisons(file, dataset, pairs))
    text = markdown(file, dataset)
    file.save(path, text)
    return text


def main() -> None:
    logging.basicConfig(format="%(message)s", level=logging.INFO)  # the runs' progress (textrec.evaluate.runs)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(RUNS))
    parser.add_argument("--only", action="append", help="run only these (repeatable); finished others still count")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument("--out", default=None, help="run folders (default: outputs/bench_<dataset>)")
    parser.add_argument("--force", action="store_true", help="redo runs that already finished")
    parser.add_argument("--reuse-only", action="store_true", help="start no run: tabulate the finished ones")
    parser.add_argument("--table", default=None, help="output name under docs/benchmarks (default: the dataset's)")
    parser.add_argument(
        "--compare", nargs=2, action="append", default=[], metavar=("A", "B"), help="also pair run A with run B"
    )
    parser.add_argument("--launcher", default=sys.executable, help="e.g. 'accelerate launch --num_processes 1'")
    args = parser.parse_args()
    runs = RUNS[args.dataset]
    unknown = [run for pair in args.compare for run in pair if run not in runs]
    if unknown:
        parser.error(f"--compare: no run {unknown} for {args.dataset}; runs: {', '.join(runs)}")
    import torch

    stem = args.dataset.replace("-", "")
    out_root = ROOT / (args.out or f"outputs/bench_{stem}")
    path = ROOT / "docs" / "benchmarks" / f"{args.table or stem}.json"
    try:
        file = ResultsFile.load(path)
    except ValueError as err:
        raise SystemExit(f"{err}; move it away to start a new table") from None
    refuse_redefined(file, runs, path)
    file.add_command(this_command())
    file.notes.update(torch=torch.__version__, budget_scale=args.budget_scale)
    env = environment()
    for seed in args.seeds:  # seed-major: a cut-off benchmark has every model at the first seeds
        for name in runs:
            done = (out_root / f"{name}_seed{seed}" / "ranks.json").is_file()
            if (args.only and name not in args.only and not done) or (args.reuse_only and not done):
                continue
            rows, ranks = measure(args, out_root, name, seed, env)
            if not any(r.method == "popularity" for r in file.rows):  # the same in every run folder
                file.merge(marked(popularity_rows(out_root / f"{name}_seed{seed}", args.dataset, env), "popularity"))
            file.merge(rows)
            file.ranks.update(ranks)
            write(file, path, args.dataset, args.compare)  # after every run: a cut-off benchmark keeps what it has
    print(write(file, path, args.dataset, args.compare) if file.rows else "no run finished and no earlier table")


if __name__ == "__main__":
    main()
