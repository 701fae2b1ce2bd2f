"""Why do trained text models rank new items so low? Diagnose finished E1-cold runs on VALIDATION slices.

    python scripts/benchmark_cold.py --dataset ml-100k                        # the runs (or reuse finished ones)
    OMP_NUM_THREADS=1 python scripts/diagnose_cold.py --dataset ml-100k outputs/cold_ml100k/<run>_seed0 [...]

For each run folder (a `recipes/train.py` output with `training.cold_item_fraction`), on the validation events split
into warm and cold slices (history masked), it measures:
- the learned per-item bias: mean and sd over warm items (a cold item gets 0);
- NDCG@10 of the model as trained, and with the bias left out;
- a separate popularity prior: score + beta * log(1 + training count), where a cold item (no count) gets a fixed
  prior (the mean or the 75th percentile of the warm items' log counts) or one predicted from its text (ridge
  regression of log count on the untrained encoder's text vectors, fitted on warm items); beta in a grid;
- how well text predicts popularity: Spearman correlation between the ridge prediction and the cold items' real
  interaction counts (read from the held-out interactions: a diagnosis only, never used for a score).
Test events are not read. Output: `docs/benchmarks/cold_diagnosis_<dataset>.json`, a textrec-results/1 file (protocol
`E1-cold diagnosis`, one row per run and slice: see `rows_of`; a later run of the same folder replaces its rows, other
runs' rows stay), and the markdown generated from it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.config import DataConfig, ModelConfig  # noqa: E402
from textrec.data import load_data  # noqa: E402
from textrec.data.splits import leave_one_out  # noqa: E402
from textrec.evaluate.metrics import metrics_from_ranks  # noqa: E402
from textrec.evaluate.ranking import (  # noqa: E402
    compute_item_vectors,
    compute_text_vectors,
    encode_histories,
    popularity_scores,
    rank_events,
)
from textrec.evaluate.results import Result, ResultsFile, environment  # noqa: E402
from textrec.evaluate.tables import header, number, table  # noqa: E402
from textrec.model.build import item_template, item_tokens  # noqa: E402
from textrec.model.hub import load_pretrained  # noqa: E402
from textrec.protocols.coldstart import slices, without_items  # noqa: E402

BETAS = (0.0, 0.25, 0.5, 1.0, 1.5)


def ndcg(model, events, item_vectors, prior: torch.Tensor | None, use_bias: bool = True) -> float:
    """Masked-history NDCG@10 of `events` with the model's scores (+ `prior` [N] per item, if given), all events in
    one batch."""
    ids = torch.arange(item_vectors.shape[0]) if use_bias else None

    def scores(start, end):
        users = encode_histories(model, [e.history for e in events[start:end]], item_vectors)
        scored = model.score(users, item_vectors, ids)
        return scored if prior is None else scored + prior

    ranks = rank_events(scores, events, item_vectors.shape[0], batch_size=max(1, len(events)))
    return metrics_from_ranks(ranks)["ndcg@10"]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def diagnose(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    data_cfg = DataConfig(**metrics["config"]["data"])
    model, tokenizer, config = load_pretrained(run / "model")
    model_cfg = ModelConfig(**config["model"])
    data = load_data(data_cfg)
    full_split = leave_one_out(data)
    cold = metrics["cold_items"]
    split = without_items(full_split, cold)
    is_cold = torch.zeros(data.num_items, dtype=torch.bool)
    is_cold[cold] = True
    texts = item_template(data, data_cfg).render_all(data.items)
    text = compute_text_vectors(model, item_tokens(texts, tokenizer, model_cfg, model), 256).float()
    vectors = compute_item_vectors(model, text, data.num_items)
    log_count = torch.log1p(popularity_scores(split.train, data.num_items).float())
    parts = slices(split.valid, cold)

    bias = model.bias(torch.arange(data.num_items))
    bias = bias.detach() if bias is not None else None
    out: dict = {"run": str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run)}
    if bias is not None:
        out["bias_warm_mean"], out["bias_warm_sd"] = float(bias[~is_cold].mean()), float(bias[~is_cold].std())
    out["valid"] = {s: ndcg(model, parts[s], vectors, None) for s in ("warm", "cold")}
    if bias is not None:
        out["valid_no_bias"] = {s: ndcg(model, parts[s], vectors, None, use_bias=False) for s in ("warm", "cold")}

    # ridge regression of log count on the untrained text vectors, fitted on warm items only
    x = torch.nn.functional.normalize(text, dim=-1)
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    warm = ~is_cold
    gram = x[warm].T @ x[warm] + torch.eye(x.shape[1])
    predicted = x @ torch.linalg.solve(gram, x[warm].T @ log_count[warm])
    real = popularity_scores(full_split.train, data.num_items).float()  # held-out items' real counts: diagnosis
    out["spearman_text_prediction_vs_real_count_cold"] = spearman(predicted[is_cold], real[is_cold])

    priors = {
        "mean": log_count[warm].mean(),
        "p75": log_count[warm].quantile(0.75),
        "text_predicted": predicted,
    }
    out["prior_sweep"] = []
    for name, cold_prior in priors.items():
        prior = torch.where(is_cold, cold_prior, log_count)
        for beta in BETAS[1:]:
            row = {"cold_prior": name, "beta": beta}
            row.update({s: ndcg(model, parts[s], vectors, beta * prior) for s in ("warm", "cold")})
            out["prior_sweep"].append(row)
    return out


ITEM_FIGURES = ("bias_warm_mean", "bias_warm_sd", "spearman_text_prediction_vs_real_count_cold")


def rows_of(dataset: str, found: dict, env: dict) -> list[Result]:
    """One run's diagnosis as rows (protocol E1-cold diagnosis, validation only): slice `items` holds the bias and
    the Spearman correlation; `warm` / `cold` the model as trained, `<slice>-no_bias` without its bias and
    `<slice>-prior_<cold prior>-<beta>` with the popularity prior (NDCG@10 as `valid_ndcg@10`)."""
    name = Path(found["run"]).name
    named = re.fullmatch(r"(.+)_seed(\d+)", name)  # benchmark_cold's folders: <method>_seed<seed>
    method, seed = (named[1], int(named[2])) if named else (name, None)
    common = dict(dataset=dataset, protocol="E1-cold diagnosis", method=method, label=name, seed=seed, **env)

    def row(slice_, metrics, **extra):
        return Result(**common, slice=slice_, metrics=metrics, extra={"run": found["run"], **extra})

    rows = [row("items", {k: found[k] for k in ITEM_FIGURES if k in found})]
    for s in ("warm", "cold"):
        rows.append(row(s, {"valid_ndcg@10": found["valid"][s]}, variant="as trained"))
        if "valid_no_bias" in found:
            rows.append(row(f"{s}-no_bias", {"valid_ndcg@10": found["valid_no_bias"][s]}, variant="without the bias"))
        for p in found["prior_sweep"]:
            extra = {"variant": "popularity prior", "cold_prior": p["cold_prior"], "beta": p["beta"]}
            rows.append(row(f"{s}-prior_{p['cold_prior']}-{p['beta']}", {"valid_ndcg@10": p[s]}, **extra))
    return rows


def markdown(file: ResultsFile) -> str:
    rows = [r for r in file.rows if r.protocol == "E1-cold diagnosis"]
    title = f"{rows[0].dataset}, E1-cold validation slices (history masked), NDCG@10"
    lines = [header(title, file, rows), ""]
    for run in dict.fromkeys((r.method, r.seed) for r in rows):
        got = {r.slice: r for r in rows if (r.method, r.seed) == run}
        figures, ndcg = got["items"].metrics, {s: r.metrics["valid_ndcg@10"] for s, r in got.items() if s != "items"}
        lines += [f"### {got['items'].extra['run']}", ""]
        if "bias_warm_sd" in figures:
            lines.append(f"- learned item bias over warm items: mean {figures['bias_warm_mean']:+.4f}, "
                         f"sd {figures['bias_warm_sd']:.4f} (cold items: 0)")  # fmt: skip
        lines.append(f"- model: warm {ndcg['warm']:.4f}, cold {ndcg['cold']:.4f}")
        if "warm-no_bias" in ndcg:
            lines.append(f"- without the bias: warm {ndcg['warm-no_bias']:.4f}, cold {ndcg['cold-no_bias']:.4f}")
        lines.append(
            "- Spearman(text-predicted log count, real count) over cold items: "
            f"{figures['spearman_text_prediction_vs_real_count_cold']:.3f}"
        )
        sweep = [r for s, r in got.items() if s.startswith("warm-prior_")]
        cells = [
            [r.extra["cold_prior"], r.extra["beta"], number(r.metrics["valid_ndcg@10"])]
            + [number(got["cold" + r.slice[4:]].metrics["valid_ndcg@10"])]
            for r in sweep
        ]
        lines += ["", table(["cold prior", "beta", "warm", "cold"], cells), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="E1-cold run folders (metrics.json, model/)")
    parser.add_argument("--dataset", required=True, help="names the output files, e.g. ml-100k")
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "metrics.json").is_file() or not (run / "model").is_dir():
            raise SystemExit(f"{run}: not a finished run folder (needs metrics.json and model/)")
        if not json.loads((run / "metrics.json").read_text()).get("cold_items"):
            raise SystemExit(f"{run}/metrics.json: no cold_items (not an E1-cold run)")
    path = ROOT / "docs" / "benchmarks" / f"cold_diagnosis_{args.dataset.replace('-', '')}.json"
    file, env = ResultsFile.load(path), environment()
    file.add_command("OMP_NUM_THREADS=1 python scripts/diagnose_cold.py " + " ".join(sys.argv[1:]))
    for run in args.runs:
        file.merge(rows_of(args.dataset, diagnose(run.resolve()), env))
    file.save(path, markdown(file))
    print(markdown(file))


if __name__ == "__main__":
    main()
