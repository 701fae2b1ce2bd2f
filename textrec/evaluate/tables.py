"""Markdown tables of benchmark results (`textrec.evaluate.results`): seeds summarised, paired comparisons, plain
rows, and the header line that says where, when and by which commands the figures were made."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textrec.evaluate.results import Comparison, Result, ResultsFile, Summary

# (column header, metric) pairs of the summary table
RANKING = (("NDCG@10", "ndcg@10"), ("Recall@10", "recall@10"), ("MRR@10", "mrr@10"))


def number(value, digits: int = 4) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 100:
        return f"{int(value):,}"
    return f"{value:.{digits}f}"


def header(title: str, file: ResultsFile, rows: Sequence[Result] = ()) -> str:
    """`title`, then the machines, versions and dates of the rows (as measured, each once) and the commands."""
    rows = rows or file.rows
    where = sorted({f"{r.machine}, {r.threads} threads" if r.threads else r.machine for r in rows if r.machine})
    versions = sorted({f"textrec {r.textrec_version}" + (f" @ {r.git_commit[:10]}" if r.git_commit else "")
                       for r in rows if r.textrec_version})  # fmt: skip
    dates = sorted({r.date for r in rows if r.date})
    parts = [title]
    if where:
        parts.append("Measured on " + "; ".join(where))
    if versions:
        parts.append(", ".join(versions))
    if dates:
        parts.append(dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}")
    text = ". ".join(parts) + "."
    if file.commands:
        text += " Commands, in order: " + "; ".join(f"`{c}`" for c in file.commands)
    return text


def table(headers: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def summary_table(
    summaries: Sequence[Summary],
    metrics: Sequence[tuple[str, str]] = RANKING,
    slices: Sequence[str] | None = None,
    extra: Sequence[tuple[str, Callable[[Summary], str]]] = (),
) -> str:
    """One line per method and slice (slices in the order given): the first metric's mean and sd over seeds, the
    other metrics' means, validation NDCG@10, epochs and training seconds, and any `extra` columns."""
    order = list(slices) if slices is not None else list(dict.fromkeys(s.slice for s in summaries))
    headers = ["method", "slice", f"{metrics[0][0]} mean", "sd", "seeds", *(h for h, _ in metrics[1:])]
    headers += ["valid NDCG@10", "epochs", "train s", *(h for h, _ in extra)]
    lines = []
    for slice_ in order:
        for s in (s for s in summaries if s.slice == slice_):
            first = metrics[0][1]
            lines.append(
                [s.label, slice_, number(s.mean.get(first)), number(s.sd.get(first)), len(s.seeds)]
                + [number(s.mean.get(m)) for _, m in metrics[1:]]
                + [number(s.mean.get("valid_ndcg@10")), number(s.mean.get("epochs"), 1)]
                + [number(round(s.mean["seconds"])) if "seconds" in s.mean else "-"]
                + [fn(s) for _, fn in extra]
            )
    return table(headers, lines)


def comparison_table(comparisons: Sequence[Comparison]) -> str:
    """Paired bootstrap intervals: a - b and a / b, with the seeds and events they pair."""
    lines = [
        [
            c.name + (" (carried: ranks not stored)" if c.carried else ""),
            c.a,
            c.b,
            c.slice,
            len(c.seeds),
            f"{c.mean_difference:+.4f} [{c.difference_low:+.4f}, {c.difference_high:+.4f}]",
            f"{c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}]",
        ]
        for c in comparisons
    ]
    return table(["comparison", "a", "b", "slice", "seeds", "difference [95% CI]", "ratio [95% CI]"], lines)


def rows_table(rows: Sequence[Result], columns: Sequence[tuple[str, str]], digits: int = 4) -> str:
    """One line per row; a column is (header, what): a field of `Result` (`method`, `seed`, `slice`, ...),
    `metric.<name>` or `extra.<name>`."""

    def cell(r: Result, what: str) -> str:
        if what.startswith("metric."):
            return number(r.metrics.get(what[7:]), digits)
        if what.startswith("extra."):
            return number(r.extra.get(what[6:]), digits)
        return number(getattr(r, what), digits)

    return table([h for h, _ in columns], [[cell(r, w) for _, w in columns] for r in rows])
