"""The HTTP API, started on 127.0.0.1 and exercised over real HTTP; the CLI."""

import copy
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from textrec.recommender import Recommender


@pytest.fixture
def server(trained_model_dir, _tiny_bert):
    uvicorn = pytest.importorskip("uvicorn")
    from textrec.serving import create_app

    out, items_path, data = trained_model_dir
    rec = Recommender.from_pretrained(out, items_path, base=copy.deepcopy(_tiny_bert[0]), show_progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(rec), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield base, data
    srv.should_exit = True
    thread.join(timeout=10)


def test_http_api(server):
    base, data = server
    with httpx.Client(base_url=base, timeout=30) as http:
        health = http.get("/healthz").json()
        assert health["status"] == "ok" and health["items"] == data.num_items
        r = http.post("/recommend", json={"history": ["i0", "i6"], "k": 5})
        assert r.status_code == 200 and len(r.json()["items"]) == 5
        assert {"i0", "i6"}.isdisjoint(i["item_id"] for i in r.json()["items"])
        assert http.post("/recommend", json={"history": "alpha red", "k": 3}).status_code == 200
        # malformed JSON, wrong types, extra fields: 422 with a message
        r = http.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"]
        assert http.post("/recommend", json={"history": ["i0"], "k": "ten"}).status_code == 422
        assert http.post("/recommend", json={"history": [1, 2]}).status_code == 422
        assert http.post("/recommend", json={"history": ["i0"], "colour": "red"}).status_code == 422
        assert http.post("/recommend", json={"history": ["i0"], "k": 0}).status_code == 422
        # empty history, too-large k: 400; unknown ids: 404, every one listed
        r = http.post("/recommend", json={"history": []})
        assert r.status_code == 400 and "empty" in r.json()["detail"]
        r = http.post("/recommend", json={"history": ["i0"], "k": 10_000})
        assert r.status_code == 400 and "larger than the catalogue" in r.json()["detail"]
        r = http.post("/recommend", json={"history": ["i0", "ghost", "phantom"]})
        assert r.status_code == 404 and r.json()["unknown_item_ids"] == ["ghost", "phantom"]
        # add an item by text; it is recommendable at once
        r = http.post(
            "/items", json={"items": [{"item_id": "fresh", "title": "alpha calm item398", "topic": "alpha"}]}
        )
        assert r.status_code == 200 and r.json()["added"] == ["fresh"]
        assert (
            http.post("/items", json={"items": [{"item_id": "fresh", "title": "x", "topic": "y"}]}).status_code == 400
        )
        assert http.post("/items", json={"items": []}).status_code == 422
        ranked = http.post("/recommend", json={"history": ["i0"], "k": data.num_items}).json()["items"]
        assert "fresh" in [i["item_id"] for i in ranked]
        r = http.post("/similar", json={"item_id": "fresh", "k": 3})
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert http.post("/similar", json={"item_id": "ghost"}).status_code == 404


def test_cli_recommend_and_index(trained_model_dir, tmp_path, tiny_bert_dir):
    out, items_path, _ = trained_model_dir
    # The saved folder names the base encoder "tiny"; point it at the tiny model saved on disk.
    import json
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(out, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["model"]["encoder"] = config["base_encoder"]["name"] = tiny_bert_dir
    (model_dir / "config.json").write_text(json.dumps(config))
    common = ["--model", str(model_dir), "--items", str(items_path), "--cache-dir", str(tmp_path / "cache")]
    run = [sys.executable, "-m", "textrec.cli"]
    proc = subprocess.run(run + ["index", *common], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "item index of 120 items ready" in proc.stdout
    proc = subprocess.run(
        run + ["recommend", *common, "--history", "i0", "i6", "--k", "3"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 3
    proc = subprocess.run(
        run + ["recommend", *common, "--history", "i0", "nope"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "unknown item ids: ['nope']" in proc.stderr
