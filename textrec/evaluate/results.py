"""Benchmark results: one typed row schema, files that merge across runs made at different times, summaries over
seeds, paired bootstrap comparisons and selection on validation. Markdown tables: `textrec.evaluate.tables`.

A results file (`docs/benchmarks/<name>.json`, format `textrec-results/1`) holds `rows` (one `Result` per run, seed
and slice), `comparisons` (paired intervals), the `commands` that produced it and free `notes`; per-event ranks of
the runs go to `<name>.ranks.json` so that a later session can pair with runs it did not redo. Every file of a
folder loads into one DataFrame with `load_benchmarks()` (metrics flattened to `metric.<name>` columns).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from textrec.evaluate.metrics import ndcg_per_event, paired_bootstrap
from textrec.evaluate.provenance import environment, git_commit, this_command  # noqa: F401 (re-exported)
from textrec.files import atomic_write_text

FORMAT = "textrec-results/1"
KEY = ("dataset", "protocol", "method", "seed", "slice")  # what makes a row unique in a file


@dataclass
class Result:
    """One measured row: a method (a stable run name) on a dataset under a protocol, for one seed and slice."""

    dataset: str
    protocol: str  # E1, E1-cold, E2, E3, E4, or a systems benchmark (throughput, serving, scale, load)
    method: str  # stable name of the run (a table's row key); `label` is the prose
    metrics: dict[str, float]
    label: str = ""
    config: str = ""  # the config file's name
    overrides: list[str] = field(default_factory=list)
    seed: int | None = None
    slice: str = "all"  # the events or variant measured: masked / unmasked, warm / cold, a fraction, a period
    events: int | None = None
    epochs: float | None = None
    steps: int | None = None
    seconds: float | None = None
    trainable_params: int | None = None
    textrec_version: str = ""
    git_commit: str = ""
    machine: str = ""
    threads: int | None = None
    date: str = ""
    extra: dict = field(default_factory=dict)  # the protocol's own parameters (lambda, eps, fraction, ...)

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY)

    @classmethod
    def from_dict(cls, data: dict, where: str = "row") -> Result:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = [n for n in ("dataset", "protocol", "method", "metrics") if n not in data]
        if unknown:
            raise ValueError(f"{where}: unknown fields {unknown} (known: {sorted(names)})")
        if missing:
            raise ValueError(f"{where}: missing fields {missing}")
        if not isinstance(data["metrics"], dict):
            raise ValueError(f"{where}: metrics must be a mapping of name -> number")
        return cls(**data)


@dataclass
class Comparison:
    """A paired bootstrap interval of per-event NDCG@10, method a - method b, on the events both were scored on."""

    name: str
    dataset: str
    a: str
    b: str
    slice: str
    seeds: list
    mean_difference: float
    difference_low: float
    difference_high: float
    ratio: float
    ratio_low: float
    ratio_high: float
    events: int
    resamples: int = 1000
    carried: bool = False  # kept from an earlier file: its ranks were not stored, so it cannot be recomputed


@dataclass
class ResultsFile:
    """The rows, comparisons, commands and notes of one benchmark table, with its per-event ranks."""

    rows: list[Result] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    ranks: dict[str, list[int]] = field(default_factory=dict)  # "method/seed/slice" -> rank of every event

    @classmethod
    def load(cls, path: str | Path) -> ResultsFile:
        """A results file (and its `.ranks.json` beside it); an empty one when there is none yet."""
        path = Path(path)
        if not path.is_file():
            return cls()
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"{path}: not a {FORMAT} file (format: {found})")
        rows = [Result.from_dict(r, f"{path} row {i}") for i, r in enumerate(doc.get("rows", []))]
        comparisons = [Comparison(**c) for c in doc.get("comparisons", [])]
        ranks_path = ranks_file(path)
        ranks = json.loads(ranks_path.read_text()) if ranks_path.is_file() else {}
        return cls(rows, comparisons, doc.get("commands", []), doc.get("notes", {}), ranks)

    def save(self, path: str | Path, markdown: str | None = None) -> None:
        """Atomic writes of the JSON, the ranks beside it (when any) and, if given, the markdown table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": FORMAT,
            "commands": self.commands,
            "notes": self.notes,
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "comparisons": [dataclasses.asdict(c) for c in self.comparisons],
        }
        atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=True) + "\n")
        if self.ranks:
            atomic_write_text(ranks_file(path), json.dumps(self.ranks, separators=(",", ":")) + "\n")
        if markdown is not None:
            atomic_write_text(path.with_name(path.name.removesuffix(".json") + ".md"), markdown)

    def add_command(self, command: str) -> None:
        """Record a command once (a repeated merge is listed once, at its latest place)."""
        self.commands = [c for c in self.commands if c != command] + [command]

    def merge(self, rows: Iterable[Result]) -> None:
        """New rows replace earlier rows with the same key; every other earlier row is kept."""
        new = {r.key(): r for r in rows}
        self.rows = [r for r in self.rows if r.key() not in new] + list(new.values())

    def set_comparisons(self, fresh: Sequence[Comparison]) -> None:
        """The recomputed comparisons, plus earlier ones that could not be recomputed (marked `carried`)."""
        done = {(c.name, c.slice) for c in fresh}
        kept = [dataclasses.replace(c, carried=True) for c in self.comparisons if (c.name, c.slice) not in done]
        self.comparisons = list(fresh) + kept


def record(path: str | Path, rows: Iterable[Result], markdown=None, command: str | None = None) -> ResultsFile:
    """A benchmark's last step: merge `rows` into the results file at `path` (rows with the same key replaced),
    record `command` (default: this process's command line), and save it with `markdown(file)` beside it when a
    table function is given. Returns the merged file."""
    file = ResultsFile.load(path)
    file.merge(rows)
    file.add_command(command or this_command())
    file.save(path, markdown(file) if markdown else None)
    return file


def ranks_file(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".json") + ".ranks.json")


def ranks_key(method: str, seed, slice_: str) -> str:
    return f"{method}/{seed}/{slice_}"


@dataclass
class Summary:
    """A method's mean over seeds on one dataset, protocol and slice."""

    dataset: str
    protocol: str
    method: str
    label: str
    slice: str
    seeds: list
    mean: dict[str, float]  # metric -> mean over seeds (also epochs and seconds)
    sd: dict[str, float | None]  # metric -> sample sd over seeds (None for one seed)


def summarise(rows: Iterable[Result]) -> list[Summary]:
    """Mean and sd over seeds of every metric (and of epochs and seconds), per (dataset, protocol, method, slice),
    in the order the groups first appear."""
    groups: dict[tuple, list[Result]] = {}
    for r in rows:
        groups.setdefault((r.dataset, r.protocol, r.method, r.slice), []).append(r)
    out = []
    for (dataset, protocol, method, slice_), rs in groups.items():
        values: dict[str, list[float]] = {}
        for r in rs:
            for name, v in {**r.metrics, "epochs": r.epochs, "seconds": r.seconds}.items():
                if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                    values.setdefault(name, []).append(float(v))
        mean = {k: statistics.fmean(v) for k, v in values.items()}
        sd = {k: statistics.stdev(v) if len(v) > 1 else None for k, v in values.items()}
        label = next((r.label for r in rs if r.label), method)
        out.append(Summary(dataset, protocol, method, label, slice_, sorted({r.seed for r in rs}, key=str), mean, sd))
    return out


def choose_on_validation(
    summaries: Sequence[Summary], methods: Iterable[str], slice_: str, metric: str = "valid_ndcg@10"
) -> str | None:
    """Of `methods`, the one with the highest mean `metric` (validation, never test) on `slice_`, among those
    measured on the most seeds; None if none of them is in `summaries`."""
    wanted = set(methods)
    pool = [s for s in summaries if s.method in wanted and s.slice == slice_ and metric in s.mean]
    most = max((len(s.seeds) for s in pool), default=0)
    pool = [s for s in pool if len(s.seeds) == most]
    return max(pool, key=lambda s: s.mean[metric]).method if pool else None


def compare(file: ResultsFile, name: str, dataset: str, a: str, b: str, slices: Sequence[str]) -> list[Comparison]:
    """Paired bootstrap of per-event NDCG@10, `a` - `b`, per slice, each event's NDCG@10 averaged over the seeds
    both methods have stored ranks for (none: no comparison)."""
    out = []
    for slice_ in slices:
        seeds_of = {
            m: {k.split("/")[1] for k in file.ranks if k.startswith(f"{m}/") and k.endswith(f"/{slice_}")}
            for m in (a, b)
        }  # fmt: skip
        seeds = sorted(seeds_of[a] & seeds_of[b])
        if a == b or not seeds:
            continue

        def per_event(method, seeds=seeds, slice_=slice_):
            return sum(ndcg_per_event(file.ranks[f"{method}/{s}/{slice_}"]) for s in seeds) / len(seeds)

        stats = paired_bootstrap(per_event(a), per_event(b))
        out.append(Comparison(name, dataset, a, b, slice_, [_seed(s) for s in seeds], **stats))
    return out


def _seed(text: str):
    return int(text) if text.lstrip("-").isdigit() else None if text == "None" else text


def load_benchmarks(folder: str | Path = "docs/benchmarks"):
    """Every results file of `folder` as one pandas DataFrame: a row per `Result`, its metrics as `metric.<name>`
    columns and `extra` as `extra.<name>`, plus `file` (the table's name)."""
    import pandas as pd

    records = []
    for path in sorted(Path(folder).glob("*.json")):
        if path.name.endswith(".ranks.json"):
            continue
        for r in ResultsFile.load(path).rows:
            flat = {k: v for k, v in dataclasses.asdict(r).items() if k not in ("metrics", "extra")}
            flat.update({f"metric.{k}": v for k, v in r.metrics.items()})
            flat.update({f"extra.{k}": v for k, v in r.extra.items()})
            records.append({"file": path.stem, **flat})
    return pd.DataFrame.from_records(records)
