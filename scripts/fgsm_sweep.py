"""The robustness / accuracy trade-off of adversarial training (protocol E4): one recipe run per training setting.

    python scripts/prepare_movielens.py
    python scripts/fgsm_sweep.py                                   # the default grid below, about 15 minutes here
    python scripts/fgsm_sweep.py --setting sign:0.03 --setting l2:0.5 --epochs 22 --warmup-epochs 18

Each setting (training norm and eps, x the mean item vector norm) is a run of recipes/adversarial_fgsm.py with the
config's model and data, so every run also trains its own normal model with the same budget and seed: the ratios
in a row are measured in one run. The default budget trains on frozen MiniLM text vectors only (warm-up epochs),
which is what makes a grid affordable on a CPU. Finished runs with the same settings are reused. Writes
docs/benchmarks/fgsm_sweep.json and docs/benchmarks/fgsm_sweep.md: clean NDCG@10 of both models and their relative
drop under FGSM (sign) and L2 attacks at one eps.
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
DEFAULT_SETTINGS = ["sign:0.01", "sign:0.03", "l2:0.1", "l2:0.5"]
COLLAPSED = 0.2  # an adversarial model under 0.2x the normal clean NDCG@10: its attack drops mean nothing


def run_setting(norm: str, eps: float, args, out_root: Path) -> dict:
    out = out_root / f"{norm}_{eps}"
    wanted = {
        "train_norm": norm,
        "train_eps": eps,
        "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "adv_weight": args.adv_weight,
    }
    report_path = out / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        if all(report["config"]["adversarial"].get(k) == v for k, v in wanted.items()):
            print(f"[{norm} {eps}] reusing {report_path}")
            return report
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "adversarial_fgsm.py"),
        "--config",
        str(args.config),
        f"adversarial.output_dir={out}",
        *[f"adversarial.{k}={v}" for k, v in wanted.items()],
    ]
    print(f"[{norm} {eps}] {' '.join(cmd)}", flush=True)
    out_root.mkdir(parents=True, exist_ok=True)
    with open(out_root / f"{norm}_{eps}.log", "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"[{norm} {eps}] failed (exit {proc.returncode}); see {out_root / f'{norm}_{eps}.log'}")
    return json.loads(report_path.read_text())


def drop(model: dict, attack: str, eps: float) -> float:
    for row in model["attacks"]:
        if row["attack"] == attack and row["eps_rel"] == eps:
            return row["relative_drop"]
    raise KeyError(f"no {attack} attack at eps {eps} in the report (eps_grid of the config)")


def row_of(norm: str, eps: float, report: dict, attack_eps: float) -> dict:
    normal, adv = report["models"]["normal"], report["models"]["adversarial"]
    return {
        "train_norm": norm,
        "train_eps": eps,
        "normal_clean": normal["clean"],
        "adversarial_clean": adv["clean"],
        "clean_ratio": adv["clean"] / normal["clean"] if normal["clean"] else float("nan"),
        "attack_eps": attack_eps,
        **{f"normal_{a}_drop": drop(normal, a, attack_eps) for a in ("sign", "l2")},
        **{f"adversarial_{a}_drop": drop(adv, a, attack_eps) for a in ("sign", "l2")},
        "seconds": report["costs"]["adversarial"]["seconds"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| training | clean NDCG@10 normal / adversarial (ratio) | FGSM drop normal / adversarial | "
        "L2 drop normal / adversarial |",
        "|---|---|---|---|",
    ]
    for r in rows:
        clean = f"{r['normal_clean']:.4f} / {r['adversarial_clean']:.4f} ({r['clean_ratio']:.3f})"
        if r["clean_ratio"] < COLLAPSED:
            drops = "collapsed | collapsed"
        else:
            drops = " | ".join(
                f"{r[f'normal_{a}_drop']:.1%} / {r[f'adversarial_{a}_drop']:.1%}" for a in ("sign", "l2")
            )
        lines.append(f"| {r['train_norm']} eps {r['train_eps']} | {clean} | {drops} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "recipes" / "configs" / "fgsm_ml100k_minilm.yaml")
    parser.add_argument("--setting", action="append", help="norm:eps of adversarial training (repeatable)")
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--warmup-epochs", type=int, default=18, help="epochs on frozen text vectors")
    parser.add_argument("--adv-weight", type=float, default=1.0, help="lambda")
    parser.add_argument("--attack-eps", type=float, default=0.1, help="the eps (x mean norm) the table reports")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "fgsm_sweep")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    if args.warmup_epochs > args.epochs:
        parser.error("--warmup-epochs must not exceed --epochs")
    rows = []
    for setting in args.setting or DEFAULT_SETTINGS:
        norm, _, eps = setting.partition(":")
        if norm not in ("sign", "l2") or not eps:
            parser.error(f"--setting: expected sign:<eps> or l2:<eps>, got {setting!r}")
        rows.append(row_of(norm, float(eps), run_setting(norm, float(eps), args, args.out), args.attack_eps))
    meta = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "fgsm_sweep.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = markdown(rows)
    (args.docs / "fgsm_sweep.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
