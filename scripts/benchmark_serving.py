"""Serving benchmark: index build, recommend latency and throughput, FAISS vs exact, add_items, HTTP on loopback.

    python scripts/benchmark_serving.py --model outputs/bench_ml100k/text_seq_lora/model \
        --text-user-model outputs/bench_ml100k/text_text_lora/model

Uses the ml-100k catalogue (data/ml-100k/ml-100k.item) and a synthetic catalogue of 100,000 item vectors (the
cached-index case: scoring and top-k only, the user tower run once). Writes docs/benchmarks/serving.json and
docs/benchmarks/serving.md. Timings are wall-clock on this machine; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def percentiles(samples_ms: list[float]) -> dict:
    arr = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)), "n": len(arr)}


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_recommender(model_dir: Path, items: Path, label: str, results: dict, users: list[list[str]]):
    from textrec.serve.recommender import Recommender

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        rec = Recommender.from_pretrained(model_dir, items, cache_dir=cache)
        build = time.perf_counter() - start
        start = time.perf_counter()
        Recommender.from_pretrained(model_dir, items, cache_dir=cache, show_progress=False)
        cached = time.perf_counter() - start
    row = {
        "user_tower": rec.towers.user_tower,
        "items": len(rec),
        "index_build_s": build,
        "load_with_cached_index_s": cached,
    }
    rec.recommend(users[0], 10)  # warm-up
    row["recommend_one_user"] = percentiles(
        timed(
            lambda: rec.recommend(users[np.random.randint(len(users))], 10),
            200 if rec.towers.user_tower == "sequence" else 50,
        )
    )
    batch = [users[i % len(users)] for i in range(1000)]
    start = time.perf_counter()
    rec.recommend_batch(batch, 10)
    row["batch_1000_users_per_s"] = 1000 / (time.perf_counter() - start)
    new = [
        {"item_id": f"new{i}", "movie_title": f"New film {i}", "release_year": "2026", "class": "Drama"}
        for i in range(100)
    ]
    start = time.perf_counter()
    rec.add_items(new)
    row["add_items_100_s"] = time.perf_counter() - start
    results[label] = row
    print(label, json.dumps(row, indent=1))
    return rec


def bench_large_catalogue(rec, results: dict, users: list[list[str]], n_items: int = 100_000):
    """Scoring + top-10 for an already-encoded user over a 100k-item cached index, exact and FAISS."""
    from textrec.serve.recommender import build_faiss_index

    gen = torch.Generator().manual_seed(0)
    dim = rec.item_vectors.shape[1]
    vectors = F.normalize(torch.randn(n_items, dim, generator=gen), dim=-1).contiguous()
    user = F.normalize(torch.randn(1, dim, generator=gen), dim=-1)
    queries = F.normalize(torch.randn(200, dim, generator=gen), dim=-1)

    def exact(u):
        return torch.topk(u @ vectors.T, 10).indices

    exact(user)
    out = {"items": n_items, "dim": dim, "exact_torch": percentiles(timed(lambda: exact(user), 300))}
    truth = exact(queries)
    for kind in ("faiss-flat", "faiss-hnsw", "faiss-ivf"):
        try:
            start = time.perf_counter()
            index = build_faiss_index(vectors.numpy(), kind)
            built = time.perf_counter() - start
        except ImportError:
            out[kind] = "faiss-cpu not installed"
            continue
        q = user.numpy()
        index.search(q, 10)
        lat = percentiles(timed(lambda q=q, index=index: index.search(q, 10), 300))
        _, found = index.search(queries.numpy(), 10)
        recall = float(np.mean([len(set(found[i]) & set(truth[i].tolist())) / 10 for i in range(len(queries))]))
        out[kind] = {**lat, "build_s": built, "recall@10_vs_exact": recall}
    # End-to-end recommend (user tower included) over the 100k index: swap the index in, as a cache would hold it.
    rec.item_ids = [f"s{i}" for i in range(n_items)]
    rec.positions = {i: n for n, i in enumerate(rec.item_ids)}
    rec.texts = [""] * n_items
    rec.item_vectors = vectors * 5
    rec.index_kind = "exact"
    rec._refresh_search()
    history = [rec.item_ids[i] for i in range(20)]
    rec.recommend(history, 10)
    out["recommend_end_to_end_sequence_tower"] = percentiles(timed(lambda: rec.recommend(history, 10), 100))
    results["catalogue_100k"] = out
    print("100k", json.dumps(out, indent=1))


def bench_http(
    model_dir: Path, items: Path, results: dict, users: list[list[str]], requests: int = 400, concurrency: int = 4
):
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
    latencies: list[float] = []
    lock = threading.Lock()

    def client(n: int, seed: int):
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base, timeout=30) as http:
            for _ in range(n):
                start = time.perf_counter()
                r = http.post("/recommend", json={"history": users[rng.integers(len(users))], "k": 10})
                r.raise_for_status()
                with lock:
                    latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(requests // concurrency, i)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    server.should_exit = True
    thread.join(timeout=10)
    results["http"] = {
        "requests": len(latencies),
        "concurrency": concurrency,
        "requests_per_s": len(latencies) / elapsed,
        **percentiles(latencies),
    }
    print("http", json.dumps(results["http"], indent=1))


def markdown(results: dict) -> str:
    lines = [
        f"{results['meta']['machine']}, {results['meta']['date']}. Command: `{results['meta']['command']}`",
        "",
        "| what | figure |",
        "|---|---|",
    ]
    for label in ("sequence_user_tower", "text_user_tower"):
        r = results.get(label)
        if not r:
            continue
        lines += [
            f"| {label}: index build, {r['items']} ml-100k items | {r['index_build_s']:.2f} s |",
            f"| {label}: load with cached index | {r['load_with_cached_index_s']:.2f} s |",
            f"| {label}: recommend, one user (p50 / p99) | {r['recommend_one_user']['p50_ms']:.1f} / "
            f"{r['recommend_one_user']['p99_ms']:.1f} ms |",
            f"| {label}: batch of 1,000 users | {r['batch_1000_users_per_s']:.0f} users/s |",
            f"| {label}: add_items(100) | {r['add_items_100_s']:.2f} s |",
        ]
    big = results.get("catalogue_100k", {})
    if big:
        lines.append(
            f"| 100k items: score + top-10, one encoded user, exact (p50 / p99) | "
            f"{big['exact_torch']['p50_ms']:.2f} / {big['exact_torch']['p99_ms']:.2f} ms |"
        )
        for kind in ("faiss-flat", "faiss-hnsw", "faiss-ivf"):
            r = big.get(kind)
            if isinstance(r, dict):
                lines.append(
                    f"| 100k items: {kind} (p50 / p99, recall@10 vs exact) | {r['p50_ms']:.2f} / "
                    f"{r['p99_ms']:.2f} ms, {r['recall@10_vs_exact']:.3f} |"
                )
        e2e = big["recommend_end_to_end_sequence_tower"]
        lines.append(
            f"| 100k items: recommend end to end, sequence tower (p50 / p99) | {e2e['p50_ms']:.1f} / "
            f"{e2e['p99_ms']:.1f} ms |"
        )
    if "http" in results:
        h = results["http"]
        lines.append(
            f"| HTTP /recommend on loopback, {h['requests']} requests x {h['concurrency']} clients | "
            f"{h['requests_per_s']:.0f} req/s, p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="outputs/bench_ml100k/text_seq_lora/model")
    parser.add_argument("--text-user-model", default="outputs/bench_ml100k/text_text_lora/model")
    parser.add_argument("--items", default="data/ml-100k/ml-100k.item")
    parser.add_argument("--json", default="docs/benchmarks/serving.json")
    parser.add_argument("--md", default="docs/benchmarks/serving.md")
    args = parser.parse_args()
    import sys

    from textrec.data import load_recbole

    torch.manual_seed(0)
    np.random.seed(0)
    data = load_recbole(Path(args.items).parent)
    from textrec.data.splits import user_sequences

    arrays = data.arrays
    users = [[data.item_ids[i] for i in arrays.items[rows][-20:]] for rows in user_sequences(data)]
    results = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "command": "python scripts/benchmark_serving.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} "
            f"threads, " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"),
        }
    }
    rec = bench_recommender(Path(args.model), Path(args.items), "sequence_user_tower", results, users)
    if Path(args.text_user_model).is_dir():
        bench_recommender(Path(args.text_user_model), Path(args.items), "text_user_tower", results, users)
    bench_http(Path(args.model), Path(args.items), results, users)
    bench_large_catalogue(rec, results, users)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    Path(args.md).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
