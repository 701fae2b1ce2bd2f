"""The clean vs robust trade-off of adversarial training (protocol E4), tabulated from a recipe report.

    OMP_NUM_THREADS=1 python recipes/adversarial_fgsm.py --config recipes/configs/fgsm_ml100k_minilm.yaml
    python scripts/benchmark_fgsm.py --report outputs/fgsm_ml100k_minilm/report.json

Writes docs/benchmarks/fgsm_<dataset, no dashes>.json (every test row of the report: dataset, method, lambda, train
eps, attack, on, eps, seed, ndcg@10; the validation rows that chose lambda and eps; summary rows: mean and sd over
seeds with the relative drop from clean; the targets of issue 12), a markdown table and a PNG of NDCG@10 against eps.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("normal", "normal_continued", "adversarial")
ATTACKS = ("sign", "l2", "random_sign", "random_l2")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds of NDCG@10 and of the relative drop from the same seed's clean NDCG@10."""
    clean = {(r["method"], r["on"], r["seed"]): r["ndcg@10"] for r in rows if r["attack"] == "none"}
    groups = defaultdict(list)
    for r in rows:
        groups[r["method"], r["attack"], r["on"], r["eps"]].append(r)
    out = []
    for (method, attack, on, eps), members in groups.items():
        values = [r["ndcg@10"] for r in members]
        drops = [1 - r["ndcg@10"] / clean[method, on, r["seed"]] for r in members]
        out.append(
            {
                "summary": True,
                "dataset": members[0]["dataset"],
                "method": method,
                "lambda": members[0]["lambda"],
                "train_eps": members[0]["train_eps"],
                "attack": attack,
                "on": on,
                "eps": eps,
                "seeds": len(members),
                "ndcg@10": statistics.mean(values),
                "ndcg@10_sd": statistics.stdev(values) if len(values) > 1 else None,
                "relative_drop": statistics.mean(drops),
                "relative_drop_sd": statistics.stdev(drops) if len(drops) > 1 else None,
            }
        )
    return out


def targets(summary: list[dict], eps: float, on: str = "outputs", reference: str = "normal") -> dict:
    """Issue 12: under FGSM at `eps` the adversarial model loses at most half the normal model's relative NDCG@10,
    with clean NDCG@10 within 3% of the normal model's; and whether there is a clean gain (APR: +11% for MF).
    `reference`: normal, or the lambda-0 control (normal_continued: same warm start and epochs)."""
    get = {(s["method"], s["attack"], s["on"], s["eps"]): s for s in summary}
    normal, adv = get[(reference, "sign", on, eps)], get[("adversarial", "sign", on, eps)]
    clean_n, clean_a = get[(reference, "none", on, 0.0)], get[("adversarial", "none", on, 0.0)]
    ratio = clean_a["ndcg@10"] / clean_n["ndcg@10"]
    return {
        "reference": reference,
        "on": on,
        "eps": eps,
        "seeds": adv["seeds"],
        "normal_drop": normal["relative_drop"],
        "adversarial_drop": adv["relative_drop"],
        "drop_ratio": adv["relative_drop"] / normal["relative_drop"],
        "robustness_met": adv["relative_drop"] <= 0.5 * normal["relative_drop"],
        "clean_ratio": ratio,
        "clean_met": ratio >= 0.97,
        "clean_gain": ratio - 1,
    }


def fmt(value, sd=None, digits=4):
    return f"{value:.{digits}f}" + (f" +- {sd:.{digits}f}" if sd is not None else "")


def markdown(report: dict, summary: list[dict], checks: list[dict], command: str) -> str:
    get = {(s["method"], s["attack"], s["on"], s["eps"]): s for s in summary}
    chosen = report["chosen"]
    lines = [
        f"E4 on {summary[0]['dataset']} (E1 test split, full ranking, history masked). {command}",
        "",
        f"Chosen on validation (seed {report['selection'][0]['seed']}): lambda {chosen['lambda']}, train eps "
        f"{chosen['train_eps']}. Rule: {chosen['rule']}.",
        "",
        "| method | lambda | train eps | seed | valid clean NDCG@10 | valid NDCG@10 under FGSM |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["selection"]:
        lines.append(
            f"| {r['method']} | {r['lambda']} | {r['train_eps']} | {r['seed']} | {r['valid_clean']:.4f} | "
            f"{r['valid_attacked']:.4f} |"
        )
    for on in ("outputs", "tokens"):
        present = [m for m in METHODS if (m, "none", on, 0.0) in get]
        if not present:
            continue
        lines += ["", f"Attacks on the {on} (NDCG@10, mean +- sd over seeds; relative drop from clean):", ""]
        lines += ["| attack | eps | " + " | ".join(present) + " |", "|---|---|" + "---|" * len(present)]
        row = [fmt(get[m, "none", on, 0.0]["ndcg@10"], get[m, "none", on, 0.0]["ndcg@10_sd"]) for m in present]
        lines.append("| clean | 0 | " + " | ".join(row) + f" (seeds: {get[present[0], 'none', on, 0.0]['seeds']}) |")
        for eps in sorted({s["eps"] for s in summary if s["on"] == on and s["eps"] > 0}):
            for attack in ATTACKS:
                cells = []
                for m in present:
                    s = get.get((m, attack, on, eps))
                    cells.append(f"{fmt(s['ndcg@10'], s['ndcg@10_sd'])} ({s['relative_drop']:+.1%})" if s else "-")
                lines.append(f"| {attack} | {eps} | " + " | ".join(cells) + " |")
    header = "| FGSM on | against | eps | seeds | drop against | drop adversarial | ratio (<= 0.5) | clean ratio |"
    lines += ["", header]
    lines.append("|---|---|---|---|---|---|---|---|")
    for c in checks:
        lines.append(
            f"| {c['on']} | {c['reference']} | {c['eps']} | {c['seeds']} | {c['normal_drop']:.1%} | "
            f"{c['adversarial_drop']:.1%} | "
            f"{c['drop_ratio']:.2f} ({'met' if c['robustness_met'] else 'missed'}) | {c['clean_ratio']:.3f} "
            f"({'met' if c['clean_met'] else 'missed'}) |"
        )
    if report.get("bootstrap"):
        lines += ["", "Paired bootstrap, adversarial - normal NDCG@10 on the same test events (1,000 resamples):", ""]
        lines += ["| seed | attack | on | eps | difference [95% CI] |", "|---|---|---|---|---|"]
        for b in report["bootstrap"]:
            lines.append(
                f"| {b['seed']} | {b['attack']} | {b['on']} | {b['eps']} | {b['mean_difference']:+.4f} "
                f"[{b['difference_low']:+.4f}, {b['difference_high']:+.4f}] |"
            )
    lines += ["", "| seed | method | lambda | train eps | steps | epochs | train s |", "|---|---|---|---|---|---|---|"]
    for c in report["costs"]:
        if "loaded_from" in c:  # a normal model loaded (adversarial.normal_from), not trained by this run
            lines.append(f"| {c['seed']} | {c['method']} | 0.0 | 0.0 | loaded from `{c['loaded_from']}` | - | - |")
            continue
        lines.append(
            f"| {c['seed']} | {c['method']} | {c.get('lambda', 0.0)} | {c.get('train_eps', 0.0)} | {c['steps']} | "
            f"{c['epochs']} | {c['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], selection: list[dict], path: Path) -> None:
    """NDCG@10 against eps per place attacked (test), and the clean vs robust trade-off of the grid (validation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    places = [on for on in ("outputs", "tokens") if any(s["on"] == on for s in summary)]
    fig, axes = plt.subplots(1, len(places) + 1, figsize=(6 * len(places) + 5, 4.2), squeeze=False)
    trade = axes[0][-1]
    for r in (r for r in selection if r["seed"] == selection[0]["seed"]):
        trade.scatter(r["valid_clean"], r["valid_attacked"], color="tab:red" if r["lambda"] else "tab:blue")
        label = f"lambda {r['lambda']}, eps {r['train_eps']}" if r["lambda"] else r["method"]
        trade.annotate(label, (r["valid_clean"], r["valid_attacked"]), fontsize=7)
    trade.set_xlabel("validation clean NDCG@10")
    trade.set_ylabel("validation NDCG@10 under FGSM")
    trade.set_title("trade-off of the grid (validation, first seed)")
    trade.grid(alpha=0.3)
    colours = {"normal": "tab:blue", "normal_continued": "tab:gray", "adversarial": "tab:red"}
    styles = {"sign": "-", "l2": "--", "random_sign": ":", "random_l2": "-."}
    for ax, on in zip(axes[0][:-1], places):
        for method in METHODS:
            mine = [s for s in summary if s["method"] == method and s["on"] == on]
            if not mine:
                continue
            clean = next(s["ndcg@10"] for s in mine if s["attack"] == "none")
            for attack, style in styles.items():
                points = sorted((s["eps"], s["ndcg@10"]) for s in mine if s["attack"] == attack)
                xs, ys = [0.005] + [p[0] for p in points], [clean] + [p[1] for p in points]
                ax.plot(xs, ys, style, color=colours[method], marker=".", label=f"{method}, {attack}")
        ax.set_xscale("log")
        ax.set_xlabel("eps (relative to each vector's norm; leftmost point = clean)")
        ax.set_ylabel("test NDCG@10 (history masked)")
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
    report = json.loads(Path(args.report).read_text())
    rows = report["rows"]
    summary = summarise(rows)
    eps = report["config"]["adversarial"]["select_eps"]
    checks = [targets(summary, eps, on) for on in ("outputs", "tokens") if any(s["on"] == on for s in summary)]
    if any(s["method"] == "normal_continued" for s in summary):
        checks.append(targets(summary, eps, "outputs", "normal_continued"))
    dataset = rows[0]["dataset"]
    prefix = Path(args.out) if args.out else ROOT / "docs" / "benchmarks" / f"fgsm_{dataset.replace('-', '')}"
    meta = {
        "command": args.command,
        "machine": f"{platform.machine()}, CPU only, OMP_NUM_THREADS=1",
        "protocol": report["protocol"],
        "popularity_ndcg@10": report["popularity_ndcg@10"],
        "chosen": report["chosen"],
        "config": report["config"],
    }
    out = {"meta": meta, "rows": rows + summary, "validation": report["selection"], "targets": checks}
    out |= {"bootstrap": report["bootstrap"], "costs": report["costs"]}
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(out, indent=1) + "\n")
    Path(f"{prefix}.md").write_text(markdown(report, summary, checks, args.command))
    plot(summary, report["selection"], Path(f"{prefix}.png"))
    print(Path(f"{prefix}.md").read_text())


if __name__ == "__main__":
    main()
