"""Serving benchmark: index build, recommend latency and throughput, FAISS vs exact, add_items, HTTP on loopback.

    python scripts/benchmark_serving.py --model outputs/bench_ml100k/text_seq_lora/model \
        --text-user-model outputs/bench_ml100k/text_text_lora/model

Uses the ml-100k catalogue (data/ml-100k/ml-100k.item) and a synthetic catalogue of 100,000 item vectors (the
cached-index case: scoring and top-k only, the user tower run once). Merges its rows (`textrec-results/1`: one per
user tower, one for HTTP, one per search over the 100k catalogue; `method` names what is measured) into
docs/benchmarks/serving.json and regenerates docs/benchmarks/serving.md. Timings are wall-clock on this machine;
compare ratios within one run.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from textrec.evaluate.results import Result, ResultsFile, environment, record
from textrec.evaluate.tables import header, number, table
from textrec.files import atomic_write_text

ORDER = ("sequence_user_tower", "text_user_tower", "exact_torch", "faiss-flat", "faiss-hnsw", "faiss-ivf")
ORDER += ("recommend_end_to_end_sequence_tower", "http_recommend")


def clock(fn):
    """`fn()` and the seconds it took."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def percentiles(samples_ms: list[float], prefix: str = "") -> dict:
    return {
        f"{prefix}p50_ms": float(np.percentile(samples_ms, 50)),
        f"{prefix}p99_ms": float(np.percentile(samples_ms, 99)),
    }


def latency(fn, repeat: int, prefix: str = "") -> dict:
    """p50 / p99 milliseconds of `repeat` calls of `fn`."""
    return percentiles([clock(fn)[1] * 1000 for _ in range(repeat)], prefix)


def bench_recommender(model_dir: Path, items: Path, method: str, users: list[list[str]], env: dict):
    from textrec.serve.recommender import Recommender

    with tempfile.TemporaryDirectory() as cache:
        rec, build = clock(lambda: Recommender.from_pretrained(model_dir, items, cache_dir=cache))
        _, cached = clock(lambda: Recommender.from_pretrained(model_dir, items, cache_dir=cache, show_progress=False))
    metrics, n_items = {"index_build_s": build, "load_with_cached_index_s": cached}, len(rec)
    rec.recommend(users[0], 10)  # warm-up
    repeat = 200 if rec.towers.user_tower == "sequence" else 50
    metrics |= latency(lambda: rec.recommend(users[np.random.randint(len(users))], 10), repeat, "recommend_")
    batch = [users[i % len(users)] for i in range(1000)]
    metrics["batch_1000_users_per_s"] = 1000 / clock(lambda: rec.recommend_batch(batch, 10))[1]
    new = [{"item_id": f"new{i}", "movie_title": f"New film {i}", "release_year": "2026", "class": "Drama"}
           for i in range(100)]  # fmt: skip
    metrics["add_items_100_s"] = clock(lambda: rec.add_items(new))[1]
    extra = {"user_tower": rec.towers.user_tower, "items": n_items, "recommend_samples": repeat}
    print(method, metrics, flush=True)
    return rec, Result(items.parent.name, "serving", method, metrics, extra={**extra, "model": str(model_dir)}, **env)


def bench_large_catalogue(rec, env: dict, n_items: int = 100_000) -> list[Result]:
    """Scoring + top-10 for an already-encoded user over a 100k-item cached index, exact and FAISS."""
    from textrec.serve.recommender import build_faiss_index

    gen = torch.Generator().manual_seed(0)
    dim = rec.item_vectors.shape[1]
    vectors = F.normalize(torch.randn(n_items, dim, generator=gen), dim=-1).contiguous()
    user = F.normalize(torch.randn(1, dim, generator=gen), dim=-1)
    queries = F.normalize(torch.randn(200, dim, generator=gen), dim=-1)
    rows = []

    def row(method, metrics, samples):
        extra = {"items": n_items, "dim": dim, "samples": samples}
        rows.append(Result("synthetic", "serving", method, metrics, extra=extra, **env))
        print(method, metrics, flush=True)

    def exact(u):
        return torch.topk(u @ vectors.T, 10).indices

    exact(user)
    row("exact_torch", latency(lambda: exact(user), 300), 300)
    truth = exact(queries)
    for kind in ("faiss-flat", "faiss-hnsw", "faiss-ivf"):
        try:
            index, built = clock(lambda kind=kind: build_faiss_index(vectors.numpy(), kind))
        except ImportError:
            print(f"{kind}: faiss-cpu not installed", flush=True)
            continue
        q = user.numpy()
        index.search(q, 10)
        lat = latency(lambda q=q, index=index: index.search(q, 10), 300)
        _, found = index.search(queries.numpy(), 10)
        recall = float(np.mean([len(set(found[i]) & set(truth[i].tolist())) / 10 for i in range(len(queries))]))
        row(kind, {**lat, "build_s": built, "recall@10_vs_exact": recall}, 300)
    # End-to-end recommend (user tower included) over the 100k index: swap the index in, as a cache would hold it.
    rec.item_ids = [f"s{i}" for i in range(n_items)]
    rec.positions = {i: n for n, i in enumerate(rec.item_ids)}
    rec.texts = [""] * n_items
    rec.item_vectors = vectors * 5
    rec.index_kind = "exact"
    rec._refresh_search()
    history = [rec.item_ids[i] for i in range(20)]
    rec.recommend(history, 10)
    row("recommend_end_to_end_sequence_tower", latency(lambda: rec.recommend(history, 10), 100), 100)
    return rows


def bench_http(model_dir: Path, items: Path, users: list[list[str]], env: dict, requests=400, concurrency=4):
    """Bounded load on loopback: `requests` POST /recommend from `concurrency` client threads."""
    import httpx
    import uvicorn

    from textrec.serve.app import create_app
    from textrec.serve.recommender import Recommender

    rec = Recommender.from_pretrained(model_dir, items, show_progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(rec), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)

    def client(seed: int) -> list[float]:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base, timeout=30) as http:

            def ask():
                http.post("/recommend", json={"history": users[rng.integers(len(users))], "k": 10}).raise_for_status()

            return [clock(ask)[1] * 1000 for _ in range(requests // concurrency)]

    with ThreadPoolExecutor(concurrency) as pool:
        latencies, elapsed = clock(lambda: [ms for part in pool.map(client, range(concurrency)) for ms in part])
    server.should_exit = True
    thread.join(timeout=10)
    metrics = {"requests_per_s": len(latencies) / elapsed, **percentiles(latencies)}
    extra = {"requests": len(latencies), "concurrency": concurrency, "samples": len(latencies)}
    print("http", metrics, flush=True)
    return Result(items.parent.name, "serving", "http_recommend", metrics, extra=extra, **env)


def figures(r: Result) -> list[list[str]]:
    """The table's lines of one row: (what, figure)."""
    m, e = r.metrics, r.extra
    if r.method.endswith("_user_tower"):
        return [
            [f"{r.method}: index build, {e['items']} {r.dataset} items", f"{number(m['index_build_s'], 2)} s"],
            [f"{r.method}: load with cached index", f"{number(m['load_with_cached_index_s'], 2)} s"],
            [f"{r.method}: recommend, one user (p50 / p99)",
             f"{number(m['recommend_p50_ms'], 1)} / {number(m['recommend_p99_ms'], 1)} ms"],
            [f"{r.method}: batch of 1,000 users", f"{number(m['batch_1000_users_per_s'], 0)} users/s"],
            [f"{r.method}: add_items(100)", f"{number(m['add_items_100_s'], 2)} s"],
        ]  # fmt: skip
    if r.method == "http_recommend":
        what = f"HTTP /recommend on loopback, {e['requests']} requests x {e['concurrency']} clients"
        got = (
            f"{number(m['requests_per_s'], 0)} req/s, p50 {number(m['p50_ms'], 1)} ms, p99 {number(m['p99_ms'], 1)} ms"
        )
        return [[what, got]]
    where, ms = f"{e['items'] // 1000}k items", f"{number(m['p50_ms'], 2)} / {number(m['p99_ms'], 2)} ms"
    if r.method == "exact_torch":
        return [[f"{where}: score + top-10, one encoded user, exact (p50 / p99)", ms]]
    if r.method.startswith("faiss"):
        return [[f"{where}: {r.method} (p50 / p99, recall@10 vs exact)", f"{ms}, {m['recall@10_vs_exact']:.3f}"]]
    e2e = f"{number(m['p50_ms'], 1)} / {number(m['p99_ms'], 1)} ms"
    return [[f"{where}: recommend end to end, sequence tower (p50 / p99)", e2e]]


def markdown(file: ResultsFile) -> str:
    rows = sorted(file.rows, key=lambda r: ORDER.index(r.method) if r.method in ORDER else len(ORDER))
    lines = [line for r in rows for line in figures(r)]
    return header("Serving", file) + "\n\n" + table(["what", "figure"], lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="outputs/bench_ml100k/text_seq_lora/model")
    parser.add_argument("--text-user-model", default="outputs/bench_ml100k/text_text_lora/model")
    parser.add_argument("--items", default="data/ml-100k/ml-100k.item")
    parser.add_argument("--json", default="docs/benchmarks/serving.json")
    parser.add_argument("--md", default="docs/benchmarks/serving.md")
    args = parser.parse_args()
    from textrec.data import load_recbole
    from textrec.data.splits import user_sequences

    torch.manual_seed(0)
    np.random.seed(0)
    items = Path(args.items)
    data = load_recbole(items.parent)
    arrays = data.arrays
    users = [[data.item_ids[i] for i in arrays.items[rows][-20:]] for rows in user_sequences(data)]
    env = environment()
    rec, row = bench_recommender(Path(args.model), items, "sequence_user_tower", users, env)
    rows = [row]
    if Path(args.text_user_model).is_dir():
        rows.append(bench_recommender(Path(args.text_user_model), items, "text_user_tower", users, env)[1])
    rows.append(bench_http(Path(args.model), items, users, env))
    rows += bench_large_catalogue(rec, env)
    file = record(args.json, rows)
    atomic_write_text(args.md, markdown(file))
    print(Path(args.md).read_text())


if __name__ == "__main__":
    main()
