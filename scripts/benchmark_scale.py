"""How the data path scales: load + E1 split + training windows + one epoch on synthetic RecBole files.

    python scripts/benchmark_scale.py                                   # 1M and 10M rows, 30 timed training steps
    python scripts/benchmark_scale.py --rows 1000000 10000000 30000000 --epoch-steps 0   # 0: the whole epoch

For every size a synthetic interaction table is written once as RecBole atomic files (`<data-dir>/scale_<rows>/`,
tab-separated, rows in shuffled order so the split has to sort; users ~ rows / 165 as in ML-1M, with skewed
history lengths; a fixed catalogue of `--items` items with Zipf-like popularity; integer timestamps with ties inside
users; ratings 1-5). Each size is then measured in a fresh process (so peak memory is that size's own):

  * read + validate: `textrec.data.load_recbole` (pyarrow reading, column-wise validation, Arrow-backed Dataset);
  * arrays: `RecData.arrays` (integer codes); leave_one_out: `textrec.data.splits.leave_one_out` (E1);
  * windows: `WindowExamples(all_targets(split.train), max_history)`;
  * epoch: the ID-only model of recipes/configs/ml1m_idonly.yaml (sequence tower over histories of up to 200; the
    softmax the loop's `training.full_softmax_items` gives, recorded) trained by `textrec.train.loop.fit` for
    `--epoch-steps` steps of 64 windows (0 = a whole epoch); the epoch time is the measured time per step x steps
    per epoch (stated as measured or extrapolated).

With `data/ml-1m` prepared (`python scripts/prepare_movielens.py --dataset ml-1m`) the real MovieLens-1M files are
measured the same way as one more row (not part of the fit).

Peak memory is the process's peak resident set size (`resource.getrusage`) after each phase (files are written
by another process: Linux carries a parent's peak over to the child it starts). Time against rows is fitted by
least squares (t = a + b * rows) and by the log-log slope (1 = linear), over every synthetic size in the file.
Merges into docs/benchmarks/scale.json (`textrec-results/1`: a row per size, `slice` = its row count, and a
`growth` row per phase) and regenerates scale.md; the load average after each size is recorded, since on a shared
machine the wall times include waiting for the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textrec.evaluate.results import Result, ResultsFile, environment, this_command  # noqa: E402
from textrec.evaluate.tables import header, number, rows_table, table  # noqa: E402

ROWS_PER_USER = 165  # ML-1M: 1,000,209 interactions / 6,040 users
PHASES = ("read_validate", "arrays", "leave_one_out", "windows")
FITTED = ("read_validate_s", "arrays_s", "leave_one_out_s", "windows_s", "load_split_s", "data_path_s")
TITLE = "Data path at scale: synthetic RecBole interaction tables"
DESCRIPTION = (
    "Data path: `load_recbole` (read + validate), `RecData.arrays`, `leave_one_out` (E1), "
    "`WindowExamples(all_targets(...), 200)`. Epoch: {models}, `textrec.train.loop.fit`, batches of 64 windows. "
    "Peak memory: peak resident set size of the process."
)
EPOCH = (
    "An epoch is (steps per epoch) x (time per step). Steps per epoch follow the rows; a step's work does not depend "
    "on the table's size (64 windows of up to 201 events, the same catalogue), so the spread of the time per step "
    "here ({low:.2f} to {high:.2f} s) is the load of the shared machine, and the epoch-time fit inherits it."
)


def write_synthetic(folder: Path, rows: int, items: int, seed: int = 0) -> dict:
    """A RecBole `.inter` / `.item` pair with `rows` interactions (no (user, item, timestamp) repeats)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    users = max(10, rows // ROWS_PER_USER)
    weights = rng.lognormal(0.0, 1.0, users)
    counts = 1 + np.floor(weights / weights.sum() * (rows - users)).astype(np.int64)
    counts[rng.choice(users, rows - int(counts.sum()), replace=False)] += 1
    user = np.repeat(np.arange(users), counts)
    first = np.zeros(rows, dtype=bool)
    first[np.concatenate([[0], np.cumsum(counts)[:-1]])] = True
    popularity = 1.0 / (np.arange(items) + 10.0) ** 0.8
    item = rng.choice(items, rows, p=popularity / popularity.sum())
    step = rng.integers(1, 3600, rows)
    tie = (rng.random(rows) < 0.05) & ~first  # about 5% of events share the previous event's timestamp ...
    tie[1:] &= ~tie[:-1]  # ... in pairs only, with a different item, so no event repeats
    step[tie] = 0
    at_tie = np.flatnonzero(tie)
    item[at_tie] = (item[at_tie - 1] + 1) % items
    step[first] = rng.integers(900_000_000, 1_000_000_000, int(first.sum()))
    stamps = np.cumsum(step)
    stamps -= np.repeat(stamps[first] - step[first], counts)
    order = rng.permutation(rows)
    columns = {"user_id": user[order], "item_id": item[order], "rating": rng.integers(1, 6, rows)}
    table = pa.table({**columns, "timestamp": stamps[order]})
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    with open(folder / f"{name}.inter", "wb") as f:
        f.write(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    lines = [f"{i}\tItem {i}\tGenre{i % 18}\n" for i in range(items)]
    (folder / f"{name}.item").write_text("item_id:token\tmovie_title:token_seq\tgenre:token\n" + "".join(lines))
    return {"rows": rows, "file_mb": (folder / f"{name}.inter").stat().st_size / 2**20}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(folder: Path, epoch_steps: int, threads: int | None, full_softmax_items: int | None) -> dict:
    """One size, in this process: the data path phase by phase, then the training steps."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    import yaml

    from textrec.config import ModelConfig
    from textrec.data import load_recbole
    from textrec.data.features import all_targets, epoch_batches
    from textrec.data.splits import leave_one_out
    from textrec.evaluate.ranking import popularity_scores
    from textrec.model.build import build_model
    from textrec.train.loop import LoopConfig, WindowExamples, fit, make_accelerator
    from textrec.train.objectives import TrainingObjective

    metrics = {"peak_mb_start": peak_mb()}

    def phase(name, fn):
        started = time.perf_counter()
        value = fn()
        metrics[f"{name}_s"], metrics[f"peak_mb_{name}"] = time.perf_counter() - started, peak_mb()
        return value

    model_cfg = ModelConfig(**yaml.safe_load((ROOT / "recipes/configs/ml1m_idonly.yaml").read_text())["model"])
    data = phase("read_validate", lambda: load_recbole(folder))
    arrays = phase("arrays", lambda: data.arrays)
    split = phase("leave_one_out", lambda: leave_one_out(data))
    examples = phase("windows", lambda: WindowExamples(all_targets(split.train), model_cfg.max_history))
    metrics["load_split_s"] = sum(metrics[f"{p}_s"] for p in PHASES[:3])
    metrics["data_path_s"] = metrics["load_split_s"] + metrics["windows_s"]

    torch.manual_seed(0)
    model, _ = build_model(model_cfg, data.num_items)
    model.mark_trained_items(np.unique(np.concatenate(split.train)))
    freq = torch.as_tensor(popularity_scores(split.train, data.num_items), dtype=torch.float32) + 1.0
    objective = TrainingObjective(model, None, freq, "softmax")
    loop = LoopConfig(epochs=1, max_steps=epoch_steps if epoch_steps > 0 else -1, progress=False, resume="never")
    if full_softmax_items is not None:
        loop.full_softmax_items = full_softmax_items
    per_epoch = len(epoch_batches(len(examples), loop.batch_size, 0, 0))
    result = fit(objective, examples, loop, make_accelerator(loop))
    per_step = result.train_seconds / max(1, result.steps)
    metrics.update(seconds_timed=result.train_seconds, seconds_per_step=per_step, epoch_seconds=per_step * per_epoch)
    metrics.update(examples_per_second=result.examples / max(result.train_seconds, 1e-9), peak_mb_epoch=peak_mb())
    softmax = "full softmax" if objective.full_softmax else "in-batch sampled softmax with logQ"
    extra = dict(users=len(arrays.user_ids), items=data.num_items, windows=len(examples), test_events=len(split.test))
    extra["model"] = f"ID-only, recipes/configs/ml1m_idonly.yaml (dim 64, max_history 200, 2 layers), {softmax}"
    extra.update(full_softmax_items=loop.full_softmax_items, steps_per_epoch=per_epoch)
    extra["extrapolated"] = result.steps < per_epoch
    return {"metrics": metrics, "extra": extra, "steps": result.steps, "threads": torch.get_num_threads()}


def fit_growth(rows: list[int], seconds: list[float]) -> dict:
    """Least-squares t = a + b * rows, and the log-log slope (1 = linear)."""
    x, y = np.asarray(rows, dtype=float), np.asarray(seconds, dtype=float)
    b, a = np.polyfit(x, y, 1)
    slope = float(np.polyfit(np.log(x), np.log(np.maximum(y, 1e-9)), 1)[0])
    return {"intercept_s": float(a), "seconds_per_million_rows": float(b * 1e6), "loglog_slope": slope}


def growth_rows(file: ResultsFile, env: dict) -> list[Result]:
    """A `growth` row per phase: the fit over every synthetic size of the file (none under two sizes)."""
    sizes = sorted((r for r in file.rows if r.dataset == "synthetic" and r.method == "data_path"), key=_rows)
    if len(sizes) < 2:
        return []
    series = {p: [r.metrics[p] for r in sizes] for p in FITTED}
    series["steps_per_epoch"] = [r.extra["steps_per_epoch"] for r in sizes]
    series["epoch_seconds"] = [r.metrics["epoch_seconds"] for r in sizes]
    x, label = [_rows(r) for r in sizes], {"steps_per_epoch": "steps per epoch (a count, not s)"}
    return [
        Result("synthetic", "scale", "growth", fit_growth(x, y), label=label.get(p, p.removesuffix("_s")), slice=p,
               extra={"rows_fitted": x}, **env)
        for p, y in series.items()
    ]  # fmt: skip


def _rows(r: Result) -> int:
    return r.extra["rows"]


def metric(name: str, digits: int):
    return lambda r: number(r.metrics[name], digits)


COLUMNS = (  # the size table: (header, cell of a row); an extrapolated epoch says so
    ("rows", lambda r: number(_rows(r)) + ("" if r.dataset == "synthetic" else f" ({r.dataset})")),
    ("users", lambda r: number(r.extra["users"])),
    ("items", lambda r: number(r.extra["items"])),
    ("file MB", metric("file_mb", 0)),
    ("read+validate s", metric("read_validate_s", 1)),
    ("arrays s", metric("arrays_s", 1)),
    ("leave_one_out s", metric("leave_one_out_s", 1)),
    ("windows s", metric("windows_s", 1)),
    ("load+split s", metric("load_split_s", 1)),
    ("peak MB (data)", metric("peak_mb_windows", 0)),
    ("epoch steps", lambda r: f"{r.steps} of {r.extra['steps_per_epoch']}" if r.extra["extrapolated"] else r.steps),
    ("s/step", metric("seconds_per_step", 2)),
    ("examples/s", metric("examples_per_second", 0)),
    ("epoch s", lambda r: metric("epoch_seconds", 0)(r) + (" (extrapolated)" if r.extra["extrapolated"] else "")),
    ("peak MB (epoch)", metric("peak_mb_epoch", 0)),
)


def markdown(file: ResultsFile) -> str:
    sizes = [r for r in file.rows if r.method == "data_path"]
    synthetic = sorted((r for r in sizes if r.dataset == "synthetic"), key=_rows)
    real = [r for r in sizes if r.dataset != "synthetic"]
    lines = [f"# {TITLE}", "", header("One fresh process per size", file, sizes), ""]
    load = [r.extra["loadavg"][0] for r in sizes if r.extra.get("loadavg")]
    cpus = max((r.extra.get("cpus") or 1 for r in sizes), default=1)
    if load:
        during = f"1-minute load average {min(load):.1f} to {max(load):.1f} after the sizes, on {cpus} CPUs"
        shared = f"**The machine was shared with other jobs** ({during}): wall times include waiting for the CPU."
        lines += [shared if max(load) > 0.5 * cpus else f"{during}.", ""]
    lines += [DESCRIPTION.format(models="; ".join(dict.fromkeys(r.extra["model"] for r in sizes))), ""]
    lines.append(table([h for h, _ in COLUMNS], [[cell(r) for _, cell in COLUMNS] for r in synthetic + real]))
    if real:
        lines += ["", "A row marked with a data set name is that real file, measured the same way, not in the fit."]
    lines += ["", "How time grows with rows (least squares t = a + b x rows; log-log slope 1 = linear):", ""]
    columns = [("phase", "label"), ("a (s)", "metric.intercept_s")]
    columns += [
        ("b (s per million rows)", "metric.seconds_per_million_rows"),
        ("log-log slope", "metric.loglog_slope"),
    ]
    growth = [r for r in file.rows if r.method == "growth"]
    lines.append(rows_table(growth, columns, digits=2) + ("" if growth else "\n| (one size only: no fit) | | | |"))
    if synthetic:
        per_step = [r.metrics["seconds_per_step"] for r in synthetic]
        lines += ["", EPOCH.format(low=min(per_step), high=max(per_step))]
    return "\n".join(lines) + "\n"


def child(*argv) -> dict:
    """This script with `argv` in a fresh process (its own peak memory); it prints one RESULT line."""
    proc = subprocess.run([sys.executable, __file__, *map(str, argv)], capture_output=True, text=True, cwd=ROOT)
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not found:
        sys.exit(f"{' '.join(map(str, argv))}: the child process failed:\n{proc.stderr[-3000:]}")
    return json.loads(found[-1].removeprefix("RESULT "))


def size_row(dataset: str, rows: int, metrics: dict, measured: dict, env: dict) -> Result:
    extra = {"rows": rows, **measured["extra"], "loadavg": list(os.getloadavg()), "cpus": os.cpu_count()}
    m = {**metrics, **measured["metrics"]}
    print(f"{rows:>11,} rows: data path {m['data_path_s']:.1f}s, peak {m['peak_mb_windows']:.0f} MB, "
          f"{m['seconds_per_step']:.2f} s/step; load average {extra['loadavg'][0]:.1f}", flush=True)  # fmt: skip
    env = {**env, "threads": measured["threads"]}
    return Result(dataset, "scale", "data_path", m, slice=str(rows), steps=measured["steps"], extra=extra, **env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--items", type=int, default=10_000, help="catalogue size (the same for every size)")
    parser.add_argument("--epoch-steps", type=int, default=30, help="training steps timed per size (0: an epoch)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--full-softmax-items", type=int, help="training.full_softmax_items (default: the loop's)")
    parser.add_argument("--ml1m", default=str(ROOT / "data/ml-1m"), help="real ML-1M folder ('' to skip)")
    parser.add_argument("--data-dir", default="/tmp/textrec_scale", help="where the synthetic files are written")
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks/scale"), help="results file (.json, .md)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # measure one folder, print JSON
    parser.add_argument("--write", default=None, help=argparse.SUPPRESS)  # write one synthetic folder
    parser.add_argument("--from-json", default=None, help="only rewrite the markdown from this results file")
    args = parser.parse_args()
    out = Path(args.out).with_suffix(".json")
    if args.child:
        result = measure(Path(args.child), args.epoch_steps, args.threads, args.full_softmax_items)
        print("RESULT " + json.dumps(result), flush=True)
    elif args.write:
        started = time.perf_counter()
        meta = write_synthetic(Path(args.write), args.rows[0], args.items)
        print("RESULT " + json.dumps({**meta, "write_s": time.perf_counter() - started}), flush=True)
    elif args.from_json:
        out.with_suffix(".md").write_text(markdown(ResultsFile.load(args.from_json)))
    else:
        run(args, out)


def run(args, out: Path) -> None:
    """Every size (written once, then measured in its own process), ML-1M if present; merged into `out`."""
    options = ["--epoch-steps", args.epoch_steps, *(["--threads", args.threads] if args.threads else [])]
    options += [] if args.full_softmax_items is None else ["--full-softmax-items", args.full_softmax_items]
    env, rows = environment(), []
    for n in sorted(args.rows):
        folder = Path(args.data_dir) / f"scale_{n}"
        if not (folder / "meta.json").is_file():  # its own process too: a child inherits this one's peak memory
            meta = child("--write", folder, "--rows", n, "--items", args.items)
            (folder / "meta.json").write_text(json.dumps(meta))
        meta = json.loads((folder / "meta.json").read_text())
        written = {k: meta[k] for k in ("file_mb", "write_s")}
        rows.append(size_row("synthetic", n, written, child("--child", folder, *options), env))
    ml1m = Path(args.ml1m) if args.ml1m else None
    if ml1m is not None and (ml1m / f"{ml1m.name}.inter").is_file():
        inter = ml1m / f"{ml1m.name}.inter"
        n = sum(1 for _ in open(inter, "rb")) - 1
        measured = child("--child", ml1m, *options)
        rows.append(size_row("ml-1m", n, {"file_mb": inter.stat().st_size / 2**20}, measured, env))
    file = ResultsFile.load(out)
    file.merge(rows)
    file.rows = [r for r in file.rows if r.method != "growth"]
    file.merge(growth_rows(file, env))
    file.add_command(this_command())
    file.save(out, markdown(file))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
