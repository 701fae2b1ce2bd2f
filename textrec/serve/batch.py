"""Batch recommendations over a JSON-lines file of requests: one answer line per request line, in order.

    {"user_id": "u1", "history": ["1", "50", "181"]}        item ids, oldest first
    {"id": 7, "text": "a funny animated film", "k": 5}       or a free-text history; an optional per-line k

Each answer is `{"user_id": ..., "items": [{"item_id": ..., "score": ...}, ...]}`; `user_id` and `id` are passed
through as given, and every score is a finite number (a NaN or infinite one, which JSON cannot hold, stops the run
naming the line). Blank lines are skipped. Every line is read and checked before any is scored, so a bad line stops
the run with a message naming the file and the line (`textrec recommend --input` then writes its output file
atomically: all or nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from textrec.data.readers import iter_json_lines

FIELDS = ("history", "text", "user_id", "id", "k")
PASSED_THROUGH = ("user_id", "id")


@dataclass(frozen=True)
class BatchRequest:
    """One line of a request file: where it is (`<file>:<line>`), the history, its k (None: the default) and the
    fields passed through to the answer."""

    where: str
    history: list[str] | str
    k: int | None
    passed_through: dict


def read_requests(path: str | Path) -> list[BatchRequest]:
    """The requests of a JSON-lines file; a bad line is a ValueError (`DataError`) naming the file and the line."""
    return [_parse(record, f"{path}, line {number}") for number, record in iter_json_lines(path)]


def _parse(record: dict, where: str) -> BatchRequest:
    unknown = [key for key in record if key not in FIELDS]
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    if ("history" in record) == ("text" in record):
        raise ValueError(f"{where}: give exactly one of 'history' (item ids, oldest first) or 'text'")
    if "text" in record:
        history = record["text"]
        if not isinstance(history, str) or not history.strip():
            raise ValueError(f"{where}: 'text' must be a non-empty string, got {history!r}")
    else:
        history = record["history"]
        if not isinstance(history, list) or not history:
            raise ValueError(f"{where}: 'history' must be a non-empty list of item ids, got {history!r}")
        bad = [i for i in history if not isinstance(i, str)]
        if bad:
            raise ValueError(f"{where}: item ids are strings, got {bad[0]!r} in 'history' (write {str(bad[0])!r})")
    k = record.get("k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise ValueError(f"{where}: 'k' must be a positive integer, got {k!r}")
    passed = {key: record[key] for key in PASSED_THROUGH if key in record}
    return BatchRequest(where, history, k, passed)


def check_requests(recommender, requests: Sequence[BatchRequest], k: int) -> None:
    """Item ids in the catalogue, k not above its size, free text only for a model that reads text."""
    for request in requests:
        wanted = request.k or k
        if wanted > len(recommender):
            raise ValueError(f"{request.where}: k={wanted} is larger than the catalogue ({len(recommender)} items)")
        if isinstance(request.history, str):
            if not recommender.model.has_text:
                raise ValueError(f"{request.where}: this model has no text encoder: 'text' cannot be read")
            continue
        unknown = [i for i in request.history if i not in recommender.positions]
        if unknown:
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ValueError(f"{request.where}: unknown item ids: {unknown[:10]}{more}")


def recommend_requests(
    recommender,
    requests: Sequence[BatchRequest],
    k: int = 10,
    *,
    exclude_seen: bool = True,
    batch_size: int = 64,
    progress: bool = True,
) -> list[dict]:
    """One answer per request, in order, through `recommend_batch` on `batch_size` requests at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    check_requests(recommender, requests, k)
    answers = []
    with tqdm(total=len(requests), desc="recommending", unit="request", disable=not progress) as bar:
        for start in range(0, len(requests), batch_size):
            chunk = requests[start : start + batch_size]
            top = max(r.k or k for r in chunk)  # the top-k of a smaller k is a prefix of this one
            try:
                results = recommender.recommend_batch([r.history for r in chunk], top, exclude_seen)
            except (ValueError, KeyError) as err:
                raise ValueError(f"{chunk[0].where} to {chunk[-1].where.rpartition(':')[2]}: {err}") from None
            for request, items in zip(chunk, results):
                scored = [{"item_id": i, "score": s} for i, s in items[: request.k or k]]
                bad = [row for row in scored if not math.isfinite(row["score"])]
                if bad:
                    item, score = bad[0]["item_id"], bad[0]["score"]
                    raise ValueError(
                        f"{request.where}: item {item!r} scores {score}, not a finite number (broken model)"
                    )
                answers.append({**request.passed_through, "items": scored})
            bar.update(len(chunk))
    return answers
