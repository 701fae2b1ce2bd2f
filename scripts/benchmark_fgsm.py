"""The clean vs robust trade-off of adversarial training (protocol E4), tabulated from a recipe report.

    OMP_NUM_THREADS=1 python recipes/adversarial_fgsm.py --config recipes/configs/fgsm_ml100k_minilm.yaml
    python scripts/benchmark_fgsm.py --report outputs/fgsm_ml100k_minilm/report.json

Writes docs/benchmarks/fgsm_<dataset, no dashes>.json, a textrec-results/1 file: one test row per method, seed and
attack (protocol E4, slice `<attack>-<place>-<eps>` such as `sign-outputs-0.1`, clean: `none-outputs-0.0`; NDCG@10
and its relative drop from the same seed's clean NDCG@10; lambda, train eps, attack, place and eps in `extra`), the
validation rows that chose lambda and eps (protocol `E4 selection`, slice `valid`, with each fit's cost), popularity,
the recipe's paired bootstrap intervals (one seed each) and, in the notes, the chosen setting, the targets of issue 12
and the recipe's config; the markdown table is generated from the JSON, with a PNG of NDCG@10 against eps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.evaluate.results import Comparison, Result, ResultsFile, environment, summarise  # noqa: E402
from textrec.evaluate.runs import run_date  # noqa: E402
from textrec.evaluate.tables import comparison_table, header, number, table  # noqa: E402

METHODS = {
    "normal": "normal training",
    "normal_continued": "normal, continued with lambda 0 (the control)",
    "adversarial": "adversarial training (the chosen lambda and eps)",
}
ATTACKS = ("sign", "l2", "random_sign", "random_l2")
SETTING = ("split", "lambda", "train_eps", "train_norm", "train_on", "attack", "on", "eps")
STATS = ("mean_difference", "difference_low", "difference_high", "ratio", "ratio_low", "ratio_high", "events")


def attack(row) -> str:
    return f"{row['attack']}-{row['on']}-{row['eps']}"


def results_file(report: dict, env: dict) -> ResultsFile:
    """The rows, comparisons and notes of a recipe report (`env`: `environment()` of the machine that ran it)."""
    costs = {(c["seed"], c["method"], c.get("lambda", 0.0), c.get("train_eps", 0.0)): c for c in report["costs"]}

    def cost(seed, method, weight, eps) -> dict:
        c = costs.get((seed, method, weight, eps), {})
        fields = {"epochs": c.get("epochs"), "steps": c.get("steps"), "seconds": c.get("seconds")}
        return fields | {"extra": {k: c[k] for k in ("examples", "stopped", "loaded_from") if k in c}}

    clean = {(r["method"], r["on"], r["seed"]): r["ndcg@10"] for r in report["rows"] if r["attack"] == "none"}
    rows = []
    for r in report["rows"]:
        c = cost(r["seed"], r["method"], r["lambda"], r["train_eps"])
        metrics = {k: v for k, v in r.items() if k not in (*SETTING, "dataset", "method", "seed")}
        metrics["relative_drop"] = 1 - r["ndcg@10"] / clean[r["method"], r["on"], r["seed"]]
        c["extra"] |= {k: r[k] for k in SETTING}
        rows.append(Result(r["dataset"], "E4", r["method"], metrics, METHODS[r["method"]], seed=r["seed"],
                           slice=attack(r), **c, **env))  # fmt: skip
    dataset = rows[0].dataset
    for r in report["selection"]:
        weight, eps = r["lambda"], r["train_eps"]
        name = f"adversarial_lambda{weight}_eps{eps}" if weight else r["method"]
        label = f"adversarial, lambda {weight}, train eps {eps}" if weight else METHODS[r["method"]]
        c = cost(r["seed"], r["method"], weight, eps)
        c["extra"] |= {"lambda": weight, "train_eps": eps} | (
            {"warm_start": r["warm_start"]} if "warm_start" in r else {}
        )
        metrics = {"valid_ndcg@10": r["valid_clean"], "valid_fgsm_ndcg@10": r["valid_attacked"]}
        rows.append(Result(dataset, "E4 selection", name, metrics, label, seed=r["seed"], slice="valid", **c, **env))
    popularity = {"ndcg@10": report["popularity_ndcg@10"]}
    rows.append(Result(dataset, "E4", "popularity", popularity, "popularity", slice="clean", epochs=0, **env))
    comparisons = [
        Comparison(f"{b['a']} vs {b['b']}, seed {b['seed']}", dataset, b["a"], b["b"], attack(b), [b["seed"]],
                   **{k: b[k] for k in STATS}, resamples=b.get("resamples", 1000))
        for b in report["bootstrap"]
    ]  # fmt: skip
    notes = {"protocol": report["protocol"], "chosen": report["chosen"], "config": report["config"]}
    return ResultsFile(rows=rows, comparisons=comparisons, notes=notes)


def tested(file: ResultsFile) -> dict:
    """Summaries over seeds of the attacked test rows, by (method, slice)."""
    return {
        (s.method, s.slice): s for s in summarise(r for r in file.rows if r.protocol == "E4" and r.seed is not None)
    }


def targets(get: dict, eps: float, on: str = "outputs", reference: str = "normal") -> dict:
    """Issue 12: under FGSM at `eps` the adversarial model loses at most half the normal model's relative NDCG@10,
    with clean NDCG@10 within 3% of the normal model's; and whether there is a clean gain (APR: +11% for MF).
    `reference`: normal, or the lambda-0 control (normal_continued: same warm start and epochs)."""
    normal, adv = get[reference, f"sign-{on}-{eps}"].mean, get["adversarial", f"sign-{on}-{eps}"]
    ratio = get["adversarial", f"none-{on}-0.0"].mean["ndcg@10"] / get[reference, f"none-{on}-0.0"].mean["ndcg@10"]
    drop_n, drop_a = normal["relative_drop"], adv.mean["relative_drop"]
    out = {"reference": reference, "on": on, "eps": eps, "seeds": len(adv.seeds), "normal_drop": drop_n}
    out |= {"adversarial_drop": drop_a, "drop_ratio": drop_a / drop_n, "robustness_met": drop_a <= 0.5 * drop_n}
    return out | {"clean_ratio": ratio, "clean_met": ratio >= 0.97, "clean_gain": ratio - 1}


def checks(file: ResultsFile) -> list[dict]:
    get, eps = tested(file), file.notes["config"]["adversarial"]["select_eps"]
    out = [targets(get, eps, on) for on in ("outputs", "tokens") if ("adversarial", f"sign-{on}-{eps}") in get]
    return out + (
        [targets(get, eps, "outputs", "normal_continued")] if ("normal_continued", "none-outputs-0.0") in get else []
    )


def met(c: dict) -> list[str]:
    drops = [f"{c['normal_drop']:.1%}", f"{c['adversarial_drop']:.1%}"]
    ratio = f"{c['drop_ratio']:.2f} ({'met' if c['robustness_met'] else 'missed'})"
    return drops + [ratio, f"{c['clean_ratio']:.3f} ({'met' if c['clean_met'] else 'missed'})"]


def cell(s) -> str:
    sd = f" +- {s.sd['ndcg@10']:.4f}" if s.sd["ndcg@10"] is not None else ""
    return f"{s.mean['ndcg@10']:.4f}{sd}"


def markdown(file: ResultsFile) -> str:
    get, chosen, notes = tested(file), file.notes["chosen"], file.notes
    chosen_on = [r for r in file.rows if r.protocol == "E4 selection"]
    lines = [header(f"E4 on {chosen_on[0].dataset} (E1 test split, full ranking, history masked)", file), ""]
    lines += [f"Chosen on validation (seed {chosen_on[0].seed}): lambda {chosen['lambda']}, train eps "
              f"{chosen['train_eps']}. Rule: {chosen['rule']}.", ""]  # fmt: skip
    picks = [[r.method, r.extra["lambda"], r.extra["train_eps"], r.seed, number(r.metrics["valid_ndcg@10"]),
              number(r.metrics["valid_fgsm_ndcg@10"])] for r in chosen_on]  # fmt: skip
    lines += [
        table(["method", "lambda", "train eps", "seed", "valid clean NDCG@10", "valid NDCG@10 under FGSM"], picks)
    ]
    for on in ("outputs", "tokens"):
        present = [m for m in METHODS if (m, f"none-{on}-0.0") in get]
        if not present:
            continue
        lines += ["", f"Attacks on the {on} (NDCG@10, mean +- sd over seeds; relative drop from clean):", ""]
        clean = [cell(get[m, f"none-{on}-0.0"]) for m in present]
        body = [["clean", 0, *clean[:-1], f"{clean[-1]} (seeds: {len(get[present[0], f'none-{on}-0.0'].seeds)})"]]
        for eps in sorted({r.extra["eps"] for r in file.rows if r.extra.get("on") == on and r.extra["eps"] > 0}):
            for name in ATTACKS:
                found = [get.get((m, f"{name}-{on}-{eps}")) for m in present]
                body.append([name, eps] + [f"{cell(s)} ({s.mean['relative_drop']:+.1%})" if s else "-" for s in found])
        lines.append(table(["attack", "eps", *present], body))
    verdict = [[c["on"], c["reference"], c["eps"], c["seeds"], *met(c)] for c in notes["targets"]]
    heads = ["FGSM on", "against", "eps", "seeds", "drop against", "drop adversarial", "ratio (<= 0.5)", "clean ratio"]
    lines += ["", table(heads, verdict)]
    if file.comparisons:
        lines += ["", "Paired bootstrap, NDCG@10 on the same test events (1,000 resamples), one seed each:", ""]
        lines.append(comparison_table(file.comparisons))
    spent = [[r.seed, r.method, r.extra["lambda"], r.extra["train_eps"]]
             + ([f"loaded from `{r.extra['loaded_from']}`", "-", "-"] if "loaded_from" in r.extra
                else [r.steps, r.epochs, number(r.seconds and round(r.seconds))]) for r in chosen_on]  # fmt: skip
    lines += ["", table(["seed", "method", "lambda", "train eps", "steps", "epochs", "train s"], spent)]
    return "\n".join(lines) + "\n"


def plot(file: ResultsFile, path: Path) -> None:
    """NDCG@10 against eps per place attacked (test), and the clean vs robust trade-off of the grid (validation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    get, grid = tested(file), [r for r in file.rows if r.protocol == "E4 selection"]
    places = [on for on in ("outputs", "tokens") if ("normal", f"none-{on}-0.0") in get]
    fig, axes = plt.subplots(1, len(places) + 1, figsize=(6 * len(places) + 5, 4.2), squeeze=False)
    trade = axes[0][-1]
    for r in (r for r in grid if r.seed == grid[0].seed):
        xy = (r.metrics["valid_ndcg@10"], r.metrics["valid_fgsm_ndcg@10"])
        trade.scatter(*xy, color="tab:red" if r.extra["lambda"] else "tab:blue")
        trade.annotate(r.label if r.extra["lambda"] else r.method, xy, fontsize=7)
    trade.set(xlabel="validation clean NDCG@10", ylabel="validation NDCG@10 under FGSM")
    trade.set_title("trade-off of the grid (validation, first seed)")
    trade.grid(alpha=0.3)
    colours = {"normal": "tab:blue", "normal_continued": "tab:gray", "adversarial": "tab:red"}
    styles = {"sign": "-", "l2": "--", "random_sign": ":", "random_l2": "-."}
    for ax, on in zip(axes[0][:-1], places):
        for method in (m for m in METHODS if (m, f"none-{on}-0.0") in get):
            clean = get[method, f"none-{on}-0.0"].mean["ndcg@10"]
            for name, style in styles.items():
                points = sorted((float(k[1].rsplit("-", 1)[1]), s.mean["ndcg@10"]) for k, s in get.items()
                                if k[0] == method and k[1].startswith(f"{name}-{on}-"))  # fmt: skip
                xs, ys = [0.005] + [p[0] for p in points], [clean] + [p[1] for p in points]
                ax.plot(xs, ys, style, color=colours[method], marker=".", label=f"{method}, {name}")
        ax.set_xscale("log")
        ax.set(xlabel="eps (relative to each vector's norm; leftmost point = clean)", ylabel="test NDCG@10 (masked)")
        ax.set_title(f"attacks on the {on}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True, help="report.json written by recipes/adversarial_fgsm.py")
    parser.add_argument(
        "--out", default=None, help="output prefix (default docs/benchmarks/fgsm_<dataset, no dashes>)"
    )
    parser.add_argument("--command", default="", help="the command that produced the report, for the table")
    args = parser.parse_args()
    report = Path(args.report)
    new = results_file(json.loads(report.read_text()), {**environment(), "date": run_date(report)})
    prefix = (
        Path(args.out) if args.out else ROOT / "docs" / "benchmarks" / f"fgsm_{new.rows[0].dataset.replace('-', '')}"
    )
    path = Path(f"{prefix}.json")
    file = ResultsFile.load(path)  # a report of more seeds replaces the rows it holds again; other rows stay
    file.merge(new.rows)
    file.set_comparisons(new.comparisons)
    for command in filter(None, (args.command, "python scripts/benchmark_fgsm.py " + shlex.join(sys.argv[1:]))):
        file.add_command(command)
    file.notes |= new.notes
    file.notes["targets"] = checks(file)
    file.save(path, markdown(file))
    plot(file, Path(f"{prefix}.png"))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
