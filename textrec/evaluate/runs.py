"""Benchmark runs: a recipe command run once into its folder and reused after (`run_once`), and the results rows of a
finished train-recipe run (`train_run_rows`). The library runs the command it is given; it never reads recipes."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from textrec.evaluate.results import Result, ranks_key

logger = logging.getLogger(__name__)
E1_SLICES = {"masked": "test_mask=True", "unmasked": "test_mask=False"}
E1_METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")


def run_once(
    command: Sequence[str], folder: Path, log: Path, done: str = "metrics.json", force: bool = False, cwd=None
) -> Path:
    """Run `command` (which writes its results into `folder`) unless `folder/done` exists; its output goes to `log`.
    A forced or unfinished run starts from an empty folder (no resuming from an older code's checkpoints). A
    failure stops the benchmark with the log's path. Returns `folder/done`."""
    folder, log = Path(folder), Path(log)
    target = folder / done
    if target.is_file() and not force:
        logger.info(f"[{folder.name}] reusing {target}")
        return target
    if folder.exists():
        shutil.rmtree(folder)
    logger.info(f"[{folder.name}] {' '.join(map(str, command))}")
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(list(map(str, command)), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not target.is_file():
        raise SystemExit(f"[{folder.name}] failed (exit status {proc.returncode}); see {log}")
    logger.info(f"[{folder.name}] done in {time.perf_counter() - started:.0f}s")
    return target


def run_date(path: Path) -> str:
    """The day a run finished (its results file), not the day it was tabulated."""
    return time.strftime("%Y-%m-%d", time.localtime(Path(path).stat().st_mtime))


def train_run_rows(
    folder: Path, dataset: str, method: str, label: str, config: str, overrides: Sequence[str], seed, env: dict
) -> tuple[list[Result], dict[str, list[int]]]:
    """The E1 rows (history masked and unmasked) of a finished train-recipe run in `folder` (its metrics.json and
    ranks.json), and their per-event test ranks keyed for `ResultsFile.ranks`. Provenance: what the run recorded
    (`environment` in its metrics.json: machine, commit, threads, date), else `env` (`results.environment()` of the
    tabulating machine) with the day the run finished."""
    folder = Path(folder)
    summary = json.loads((folder / "metrics.json").read_text())
    env = summary.get("environment") or {**env, "date": run_date(folder / "metrics.json")}
    ranks = json.loads((folder / "ranks.json").read_text()) if (folder / "ranks.json").is_file() else {}
    rows, stored = [], {}
    for slice_, key in E1_SLICES.items():
        measured = summary["results"][key]
        rows.append(
            Result(
                dataset=dataset,
                protocol="E1",
                method=method,
                label=label,
                config=config,
                overrides=list(overrides),
                seed=seed,
                slice=slice_,
                metrics={
                    **{k: measured[k] for k in E1_METRICS if k in measured},
                    "valid_ndcg@10": summary["best_valid_ndcg@10"],
                },
                events=measured.get("n_events"),
                epochs=summary["epochs"],
                steps=summary.get("optimizer_steps"),
                seconds=summary["train_seconds"],
                trainable_params=summary["trainable_params"],
                **env,
                extra=_train_extra(summary),
            )
        )
        if key in ranks:
            stored[ranks_key(method, seed, slice_)] = ranks[key]
    return rows, stored


def _train_extra(summary: dict) -> dict:
    """What a table needs beside the metrics: how the run stopped, its speed and memory, and the epoch of its best
    validation (the tested weights) with the epoch the encoder joined after (a LoRA run whose best epoch is not
    after the join was tested without its adapter's training)."""
    best = max(summary.get("curve") or [], key=lambda p: p["valid_ndcg@10"], default={}).get("epoch")
    model, training = summary["config"].get("model", {}), summary["config"]["training"]
    encoder_trains = model.get("encoder") and model.get("train_mode") != "frozen"
    joined = summary.get("encoder_joined_after_epoch", training.get("encoder_warmup_epochs", 0))
    return {
        "stopped": summary.get("stopped"),
        "epoch_seconds": summary.get("epoch_seconds"),
        "examples_per_second": summary.get("examples_per_second"),
        "peak_memory_mb": summary.get("peak_memory_mb"),
        "budget_minutes": training.get("max_train_minutes"),
        "best_epoch": best,
        "encoder_warmup_epochs": joined if encoder_trains else None,
    }


def popularity_rows(folder: Path, dataset: str, env: dict) -> list[Result]:
    """The popularity baseline's E1 rows, as a train-recipe run in `folder` measured them."""
    summary = json.loads((Path(folder) / "metrics.json").read_text())
    env = summary.get("environment") or {**env, "date": run_date(Path(folder) / "metrics.json")}
    return [
        Result(
            dataset=dataset,
            protocol="E1",
            method="popularity",
            label="popularity",
            slice=slice_,
            metrics={k: summary["results"][f"popularity_mask={mask}"][k] for k in E1_METRICS},
            events=summary["results"][f"popularity_mask={mask}"].get("n_events"),
            epochs=0,
            seconds=0.0,
            trainable_params=0,
            **env,
        )
        for slice_, mask in (("masked", True), ("unmasked", False))
    ]
