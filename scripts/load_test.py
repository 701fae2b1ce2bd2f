"""A bounded mixed read/write load on the HTTP server at 127.0.0.1, with a restart in the middle.

    python scripts/load_test.py --model outputs/ml100k_minilm/model --items data/ml-100k/ml-100k.item

Starts `textrec serve` (with an API key and an items log) on a free loopback port, then runs two phases of the same
load: reader threads post /recommend with random histories of catalogue ids, one writer thread posts /items with
new items (by text). Each phase is bounded by a request count and a time cap. Between the phases the server is
stopped and started again; afterwards every item added before the restart must still be in the index (/similar
answers 200) and usable in a history (/recommend answers 200). Reports requests/s, p50/p99 latency, errors by
status (5xx must be 0) and lost items (must be 0). Merges a row per phase and one for the restart
(`textrec-results/1`) into `<out>/load_test.json` (default docs/benchmarks) and regenerates load_test.md.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from textrec.data import load_items
from textrec.data.text import ItemTemplate
from textrec.evaluate.results import Result, ResultsFile, environment, record
from textrec.evaluate.tables import header, number, table
from textrec.model.hub import read_config

KEY = "load-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int, cache_dir: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "textrec.serve.cli", "serve", "--model", args.model, "--items", args.items]
    cmd += ["--cache-dir", str(cache_dir), "--items-log", str(log), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--api-key", KEY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + args.start_timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not answer within {args.start_timeout}s")


def catalogue_ids(items_file: str) -> list[str]:
    return [str(i) for i in load_items(items_file)["item_id"]]


def run_phase(base: str, ids: list[str], fields: dict, args, phase: int) -> tuple[dict, list[str]]:
    """Readers and one writer until `args.requests` requests are done or `args.seconds` pass: the phase's metrics
    (requests, seconds, rate, p50 / p99 ms, a count per status, 5xx errors) and the ids of the items it added."""
    stop_at, lock = time.perf_counter() + args.seconds, threading.Lock()
    budget = {"left": args.requests}
    latencies, statuses, added = [], {}, []

    def take() -> bool:
        with lock:
            if budget["left"] <= 0 or time.perf_counter() > stop_at:
                return False
            budget["left"] -= 1
            return True

    def record(started, status, item_id=None):
        with lock:
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if item_id is not None and status == 200:
                added.append(item_id)

    def reader(seed):
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30) as http:
            while take():
                history = rng.sample(ids, rng.randint(1, 20))
                started = time.perf_counter()
                status = http.post("/recommend", json={"history": history, "k": 10}).status_code
                record(started, status)

    def writer(seed):
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30, headers={"x-api-key": KEY}) as http:
            n = 0
            while take():
                item_id = f"load-{phase}-{n}"
                n += 1
                item = {"item_id": item_id, **{f: f"{f} {rng.choice(ids)} new {n}" for f in fields}}
                started = time.perf_counter()
                record(started, http.post("/items", json={"items": [item]}).status_code, item_id)
                time.sleep(args.write_pause)

    threads = [threading.Thread(target=reader, args=(phase * 100 + i,)) for i in range(args.readers)]
    threads.append(threading.Thread(target=writer, args=(phase,)))
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    metrics = {"requests": len(latencies), "seconds": seconds, "requests_per_second": len(latencies) / seconds}
    if latencies:
        ms = np.asarray(latencies) * 1000
        metrics |= {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
    metrics |= {f"status_{k}": v for k, v in sorted(statuses.items())}
    metrics["errors_5xx"] = sum(v for k, v in statuses.items() if k >= 500)
    return metrics, added


def lost_items(base: str, added: list[str]) -> list[str]:
    """Items added before the restart that the restarted server lost: each must still have a vector in the index
    (/similar answers 200) and be usable as a history item (/recommend answers 200)."""
    lost = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for item_id in added:
            similar = http.post("/similar", json={"item_id": item_id, "k": 5}).status_code
            recommend = http.post("/recommend", json={"history": [item_id], "k": 5}).status_code
            if similar != 200 or recommend != 200:
                lost.append(item_id)
    return lost


def markdown(file: ResultsFile) -> str:
    lines = []
    for r in (r for r in file.rows if r.method == "mixed_read_write"):
        m = r.metrics
        statuses = ", ".join(f"{k.removeprefix('status_')}: {v}" for k, v in m.items() if k.startswith("status_"))
        lines.append(
            [r.extra["phase"], number(m["requests"]), number(m["requests_per_second"], 0)]
            + [number(m.get("p50_ms"), 1), number(m.get("p99_ms"), 1), statuses, number(m["errors_5xx"])]
        )
    text = header("Load test", file) + "\n\n"
    text += table(["phase", "requests", "req/s", "p50 ms", "p99 ms", "statuses", "5xx"], lines) + "\n"
    for r in (r for r in file.rows if r.method == "restart"):
        m = r.metrics
        text += (
            f"\n{number(m['items_added_before_restart'])} items added before the restart, "
            f"{number(m['items_lost'])} lost after it; restart took {m['restart_seconds']:.1f}s\n"
        )
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--items", required=True)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=1500, help="per phase (bounded)")
    parser.add_argument("--seconds", type=float, default=90, help="per phase time cap")
    parser.add_argument("--write-pause", type=float, default=0.02, help="seconds between the writer's requests")
    parser.add_argument("--start-timeout", type=float, default=300)
    parser.add_argument("--out", default="docs/benchmarks", help="folder of load_test.{json,md}")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="textrec-load-"))
    cache_dir, log, port = work / "cache", work / "added_items.jsonl", free_port()
    base = f"http://127.0.0.1:{port}"
    fields = ItemTemplate(read_config(args.model)["item_template"]).fields
    ids = catalogue_ids(args.items)
    env = environment()
    server = start_server(args, port, cache_dir, log)
    try:
        first, added = run_phase(base, ids, fields, args, 1)
    finally:
        server.terminate()
        server.wait(timeout=60)
    restarted_at = time.perf_counter()
    server = start_server(args, port, cache_dir, log)
    restart_seconds = time.perf_counter() - restarted_at
    try:
        lost = lost_items(base, added)
        second, _ = run_phase(base, ids, fields, args, 2)
    finally:
        server.terminate()
        server.wait(timeout=60)
    dataset, extra = Path(args.items).parent.name, {"readers": args.readers, "writers": 1}
    rows = [Result(dataset, "load", "mixed_read_write", m, slice=f"phase_{i}", extra={"phase": i, **extra}, **env)
            for i, m in ((1, first), (2, second))]  # fmt: skip
    restart = {"restart_seconds": restart_seconds, "items_added_before_restart": len(added), "items_lost": len(lost)}
    rows.append(Result(dataset, "load", "restart", restart, extra={**extra, "lost_after_restart": lost}, **env))
    out = Path(args.out) / "load_test.json"
    record(out, rows, markdown)
    print(out.with_suffix(".md").read_text())
    sys.exit(1 if lost or first["errors_5xx"] or second["errors_5xx"] else 0)


if __name__ == "__main__":
    main()
