"""The README's two results tables, generated from the results files they quote (tests/test_readme_tables.py checks
that README.md holds exactly these tables).

    python scripts/readme_tables.py          # print both tables, to paste into README.md after a benchmark run

Each table is its rows (a method of the results file and the label the README gives it) and its paired comparisons;
the best ID-only and the best text model are chosen on validation (`choose_on_validation`), never on test, and set
in bold: the label and the figure that decided.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.evaluate.results import ResultsFile, choose_on_validation, summarise  # noqa: E402
from textrec.evaluate.tables import table  # noqa: E402

ML100K = (
    "ml100k_fresh_seeds",
    [
        ("popularity", "popularity"),
        ("id_only_pos002", "textrec ID-only (SASRec-style sequence tower over item ids), temperature 0.05"),
        ("id_only_t01", "textrec ID-only, temperature 0.1"),
        ("text_frozen_content_pos002", "MiniLM frozen + ids, id dropout 0.5, item bias, content path 5"),
        ("text_frozen_content_t01", "the same, temperature 0.1"),
        ("text_lora_content_pos002", "MiniLM + LoRA, same settings (10-minute budget)"),
        ("smollm2_frozen_content", "SmolLM2-135M frozen, same settings"),
    ],
    [("best text vs ID-only", "best text vs best ID-only, paired bootstrap 95% interval (943 events)"),
     ("LoRA vs frozen", "LoRA vs frozen, paired")],
)  # fmt: skip
ML1M = (
    "ml1m",
    [
        ("popularity", "popularity"),
        ("id_only", "textrec ID-only"),
        ("text_frozen", "MiniLM frozen + ids"),
        ("text_lora", "MiniLM + LoRA + ids (LoRA after 15 frozen epochs)"),
        ("smollm2_frozen", "SmolLM2-135M frozen + ids"),
    ],
    [("best text vs ID-only", "best text vs ID-only, paired bootstrap 95% interval (6,040 events)")],
)


def cell(summary, slice_: str, bold: bool = False) -> str:
    mean, sd = summary[slice_].mean["ndcg@10"], summary[slice_].sd.get("ndcg@10")
    text = f"{mean:.4f}" + (f" ± {sd:.4f}" if sd else "")
    return f"**{text}**" if bold else text


def readme_table(name: str, rows: list[tuple[str, str]], comparisons: list[tuple[str, str]]) -> str:
    file = ResultsFile.load(ROOT / "docs" / "benchmarks" / f"{name}.json")
    by = {}
    for s in summarise(r for r in file.rows if r.protocol == "E1"):
        by.setdefault(s.method, {})[s.slice] = s
    kinds = {r.method: r.extra.get("kind") for r in file.rows}
    listed = [m for m, _ in rows]
    best_id = choose_on_validation(
        [s for v in by.values() for s in v.values()], [m for m in listed if kinds[m] == "id"], "masked"
    )
    text = [m for m in listed if kinds[m] not in ("id", "popularity")]
    best_text = choose_on_validation([s for v in by.values() for s in v.values()], text, "masked")  # fmt: skip
    several = any(len(by[m]["masked"].seeds) > 1 for m in listed if m != "popularity")
    lines = []
    for method, label in rows:
        s = by[method]
        if method == "popularity":
            lines.append([label, cell(s, "masked"), cell(s, "unmasked"), "-", "-"] + (["-"] if several else []))
            continue
        note = " (best ID-only on validation)" if method == best_id else ""
        note = " (best text on validation)" if method == best_text else note
        valid = f"{s['masked'].mean['valid_ndcg@10']:.4f}"
        epochs = f"{s['masked'].mean['epochs']:.0f}" if several else f"{s['masked'].mean['epochs']:.1f}"
        line = [
            f"**{label}**{note}" if note else label,
            cell(s, "masked", method == best_id and several),
            cell(s, "unmasked", method == best_id and several),
            f"**{valid}**" if method == best_text else valid,
        ]
        line += [epochs, f"{s['masked'].mean['seconds']:.0f}"] if several else [epochs]  # fmt: skip
        lines.append(line)
    for comparison, label in comparisons:
        found = {c.slice: c for c in file.comparisons if c.name == comparison}
        intervals = [f"{c.mean_difference:+.4f} [{c.difference_low:+.4f}, {c.difference_high:+.4f}]"
                     for c in (found["masked"], found["unmasked"])]  # fmt: skip
        lines.append([label, *intervals, "", ""] + ([""] if several else []))
    headers = ["model", "NDCG@10 masked", "NDCG@10 unmasked", "valid NDCG@10", "epochs"] + (
        ["train s"] if several else []
    )
    return table(headers, lines)


def main() -> None:
    for spec in (ML100K, ML1M):
        print(readme_table(*spec) + "\n")


if __name__ == "__main__":
    main()
