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
by another process: Linux carries a parent's peak over to the child it starts). Time against rows is
fitted by least squares (t = a + b * rows) and by the log-log slope (1 = linear). Writes
docs/benchmarks/scale.{json,md}; the load average is recorded, since on a shared machine the wall times include
waiting for the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS_PER_USER = 165  # ML-1M: 1,000,209 interactions / 6,040 users


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
    table = pa.table(
        {
            "user_id": user[order],
            "item_id": item[order],
            "rating": rng.integers(1, 6, rows),
            "timestamp": stamps[order],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    with open(folder / f"{name}.inter", "wb") as f:
        f.write(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    lines = [f"{i}\tItem {i}\tGenre{i % 18}\n" for i in range(items)]
    (folder / f"{name}.item").write_text("item_id:token\tmovie_title:token_seq\tgenre:token\n" + "".join(lines))
    return {"rows": rows, "users": users, "items": items, "file_mb": (folder / f"{name}.inter").stat().st_size / 2**20}


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

    out: dict = {"peak_mb": {"start": peak_mb()}}
    started = time.perf_counter()
    data = load_recbole(folder)
    out["read_validate_s"] = time.perf_counter() - started
    out["peak_mb"]["read_validate"] = peak_mb()
    started = time.perf_counter()
    arrays = data.arrays
    out["arrays_s"] = time.perf_counter() - started
    out["peak_mb"]["arrays"] = peak_mb()
    started = time.perf_counter()
    split = leave_one_out(data)
    out["leave_one_out_s"] = time.perf_counter() - started
    out["peak_mb"]["leave_one_out"] = peak_mb()
    model_cfg = ModelConfig(**yaml.safe_load((ROOT / "recipes/configs/ml1m_idonly.yaml").read_text())["model"])
    started = time.perf_counter()
    examples = WindowExamples(all_targets(split.train), model_cfg.max_history)
    out["windows_s"] = time.perf_counter() - started
    out["peak_mb"]["windows"] = peak_mb()
    out["load_split_s"] = out["read_validate_s"] + out["arrays_s"] + out["leave_one_out_s"]
    out["data_path_s"] = out["load_split_s"] + out["windows_s"]
    out.update(users=len(arrays.user_ids), items=data.num_items, windows=len(examples), test_events=len(split.test))

    torch.manual_seed(0)
    model, _ = build_model(model_cfg, data.num_items)
    model.mark_trained_items(np.unique(np.concatenate(split.train)))
    freq = torch.as_tensor(popularity_scores(split.train, data.num_items), dtype=torch.float32) + 1.0
    objective = TrainingObjective(model, None, freq, "softmax")
    loop = LoopConfig(epochs=1, max_steps=epoch_steps if epoch_steps > 0 else -1, progress=False, resume="never")
    if full_softmax_items is not None:
        loop.full_softmax_items = full_softmax_items
    steps_per_epoch = len(epoch_batches(len(examples), loop.batch_size, 0, 0))
    result = fit(objective, examples, loop, make_accelerator(loop))
    softmax = "full softmax" if objective.full_softmax else "in-batch sampled softmax with logQ"
    out["epoch"] = {
        "model": f"ID-only, recipes/configs/ml1m_idonly.yaml (dim 64, max_history 200, 2 layers), {softmax}",
        "full_softmax_items": loop.full_softmax_items,
        "steps_timed": result.steps,
        "steps_per_epoch": steps_per_epoch,
        "seconds_timed": result.train_seconds,
        "seconds_per_step": result.train_seconds / max(1, result.steps),
        "examples_per_second": result.examples / max(result.train_seconds, 1e-9),
        "epoch_seconds": result.train_seconds / max(1, result.steps) * steps_per_epoch,
        "extrapolated": result.steps < steps_per_epoch,
        "torch_threads": torch.get_num_threads(),
    }
    out["peak_mb"]["epoch"] = peak_mb()
    return out


def fit_growth(rows: list[int], seconds: list[float]) -> dict:
    """Least-squares t = a + b * rows, and the log-log slope (1 = linear)."""
    if len(rows) < 2:
        return {}
    x, y = np.asarray(rows, dtype=float), np.asarray(seconds, dtype=float)
    b, a = np.polyfit(x, y, 1)
    slope = float(np.polyfit(np.log(x), np.log(np.maximum(y, 1e-9)), 1)[0])
    return {"intercept_s": float(a), "seconds_per_million_rows": float(b * 1e6), "loglog_slope": slope}


def system() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()}


def write_report(results: list[dict], real: list[dict], info: dict, out: Path) -> None:
    phases = ("read_validate_s", "arrays_s", "leave_one_out_s", "windows_s", "load_split_s", "data_path_s")
    rows = [r["rows"] for r in results]
    growth = {p: fit_growth(rows, [r[p] for r in results]) for p in phases}
    growth["steps_per_epoch"] = fit_growth(rows, [r["epoch"]["steps_per_epoch"] for r in results])
    growth["epoch_seconds"] = fit_growth(rows, [r["epoch"]["epoch_seconds"] for r in results])
    payload = {"system": info, "results": results, "real_data": real, "growth": growth}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    before, after = info["loadavg_before"], info["loadavg_after"]
    shared = max(before[0], after[0]) > 0.5 * (info["cores"] or 1)
    lines = [
        "# Data path at scale: synthetic RecBole interaction tables",
        "",
        f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, CPU only; {info['date']}; "
        f"`{info['command']}`.",
        "",
        (
            f"**The machine was shared with other jobs** (1-minute load average {before[0]:.1f} before and "
            f"{after[0]:.1f} after, on {info['cores']} cores): wall times include waiting for the CPU."
            if shared
            else f"Load average {before[0]:.1f} before and {after[0]:.1f} after, on {info['cores']} cores."
        ),
        "",
        "Data path: `load_recbole` (read + validate), `RecData.arrays`, `leave_one_out` (E1), "
        "`WindowExamples(all_targets(...), 200)`. Epoch: " + results[0]["epoch"]["model"] + ", "
        "`textrec.train.loop.fit`, batches of 64 windows. Peak memory: peak resident set size of the process.",
        "",
        "| rows | users | items | file MB | read+validate s | arrays s | leave_one_out s | windows s | "
        "load+split s | peak MB (data) | epoch steps | s/step | examples/s | epoch s | peak MB (epoch) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results + real:
        e = r["epoch"]
        label = f"{r['rows']:,}" + (f" ({r['name']})" if "name" in r else "")
        timed = f"{e['steps_timed']} of {e['steps_per_epoch']}" if e["extrapolated"] else f"{e['steps_per_epoch']}"
        epoch = f"{e['epoch_seconds']:.0f}" + (" (extrapolated)" if e["extrapolated"] else "")
        lines.append(
            f"| {label} | {r['users']:,} | {r['items']:,} | {r['file_mb']:.0f} | {r['read_validate_s']:.1f} | "
            f"{r['arrays_s']:.1f} | {r['leave_one_out_s']:.1f} | {r['windows_s']:.1f} | {r['load_split_s']:.1f} | "
            f"{r['peak_mb']['windows']:.0f} | {timed} | {e['seconds_per_step']:.2f} | "
            f"{e['examples_per_second']:.0f} | {epoch} | {r['peak_mb']['epoch']:.0f} |"
        )
    if real:
        lines += ["", "A row marked with a data set name is that real file, measured the same way, not in the fit."]
    lines += ["", "How time grows with rows (least squares t = a + b x rows; log-log slope 1 = linear):", ""]
    lines += ["| phase | a (s) | b (s per million rows) | log-log slope |", "|---|---|---|---|"]
    for phase, g in growth.items():
        if g:
            lines.append(
                f"| {phase.removesuffix('_s').replace('steps_per_epoch', 'steps per epoch (a count, not s)')} | "
                f"{g['intercept_s']:.2f} | {g['seconds_per_million_rows']:.2f} | "
                f"{g['loglog_slope']:.2f} |"
            )
    if len(results) < 2:
        lines.append("| (one size only: no fit) | | | |")
    per_step = [r["epoch"]["seconds_per_step"] for r in results]
    lines += [
        "",
        "An epoch is (steps per epoch) x (time per step). Steps per epoch follow the rows; a step's work does not "
        "depend on the table's size (64 windows of up to 201 events, the same catalogue), so the spread of the time "
        f"per step here ({min(per_step):.2f} to {max(per_step):.2f} s) is the load of the shared machine, and the "
        "epoch-time fit inherits it.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def run_child(folder: Path, args) -> dict:
    """Measure one folder in a fresh process (its own peak memory); the child prints one RESULT line."""
    command = [sys.executable, __file__, "--child", str(folder), "--epoch-steps", str(args.epoch_steps)]
    command += ["--threads", str(args.threads)] if args.threads else []
    if args.full_softmax_items is not None:
        command += ["--full-softmax-items", str(args.full_softmax_items)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not found:
        sys.exit(f"{folder}: the measuring process failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(found[-1].removeprefix("RESULT ")), "loadavg": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--items", type=int, default=10_000, help="catalogue size (the same for every size)")
    parser.add_argument("--epoch-steps", type=int, default=30, help="training steps timed per size (0: an epoch)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--full-softmax-items", type=int, default=None, help="training.full_softmax_items (default: the loop's)"
    )
    parser.add_argument("--ml1m", default=str(ROOT / "data/ml-1m"), help="real ML-1M folder ('' to skip)")
    parser.add_argument("--data-dir", default="/tmp/textrec_scale", help="where the synthetic files are written")
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks/scale"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # measure one folder, print JSON
    parser.add_argument("--write", default=None, help=argparse.SUPPRESS)  # write one synthetic folder
    parser.add_argument("--from-json", default=None, help="only rewrite the report from this JSON report")
    args = parser.parse_args()
    if args.child:
        result = measure(Path(args.child), args.epoch_steps, args.threads, args.full_softmax_items)
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.from_json:  # rewrite the Markdown report from a JSON one
        payload = json.loads(Path(args.from_json).read_text())
        write_report(payload["results"], payload["real_data"], payload["system"], Path(args.out))
        return
    if args.write:
        started = time.perf_counter()
        meta = write_synthetic(Path(args.write), args.rows[0], args.items)
        meta["write_s"] = time.perf_counter() - started
        (Path(args.write) / "meta.json").write_text(json.dumps(meta))
        return
    info = system()
    info.update(
        date=time.strftime("%Y-%m-%d"),
        command="python scripts/benchmark_scale.py " + " ".join(sys.argv[1:]),
        loadavg_before=os.getloadavg(),
    )
    results, real = [], []
    for rows in sorted(args.rows):
        folder = Path(args.data_dir) / f"scale_{rows}"
        meta_path = folder / "meta.json"
        if not meta_path.is_file():  # in its own process too: a child would inherit this one's peak memory
            command = [sys.executable, __file__, "--write", str(folder), "--rows", str(rows)]
            subprocess.run(command + ["--items", str(args.items)], check=True, cwd=ROOT)
        results.append({**json.loads(meta_path.read_text()), **run_child(folder, args)})
        report(results[-1])
    ml1m = Path(args.ml1m) if args.ml1m else None
    if ml1m is not None and (ml1m / f"{ml1m.name}.inter").is_file():
        inter = ml1m / f"{ml1m.name}.inter"
        meta = {"name": "ml-1m", "file_mb": inter.stat().st_size / 2**20}
        real.append({**meta, **run_child(ml1m, args)})
        real[-1]["rows"] = sum(1 for _ in open(inter, "rb")) - 1
        report(real[-1])
    info["loadavg_after"] = os.getloadavg()
    write_report(results, real, info, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())


def report(result: dict) -> None:
    print(
        f"{result['rows']:>11,} rows: load+split {result['load_split_s']:.1f}s, windows {result['windows_s']:.1f}s, "
        f"peak {result['peak_mb']['windows']:.0f} MB; {result['epoch']['seconds_per_step']:.2f} s/step, "
        f"epoch {result['epoch']['epoch_seconds']:.0f}s; load average {result['loadavg'][0]:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
