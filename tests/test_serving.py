"""The HTTP API, started on 127.0.0.1 and exercised over real HTTP; the CLI."""

import copy
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from textrec.serve.recommender import Recommender

KEY = {"x-api-key": "secret"}


def _fresh_recommender(trained_model_dir, _tiny_bert):
    out, items_path, _ = trained_model_dir
    return Recommender.from_pretrained(out, items_path, base=copy.deepcopy(_tiny_bert[0]), show_progress=False)


class _Running:
    """A uvicorn server on 127.0.0.1 in a thread; `stop()` ends it."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{self.base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server(trained_model_dir, _tiny_bert):
    pytest.importorskip("uvicorn")
    from textrec.serve.app import create_app

    running = _Running(create_app(_fresh_recommender(trained_model_dir, _tiny_bert), api_key="secret"))
    yield running.base, trained_model_dir[2]
    running.stop()


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
        r = http.post("/recommend", json={"history": ["i0"], "k": 500})
        assert r.status_code == 400 and "larger than the catalogue" in r.json()["detail"]
        r = http.post("/recommend", json={"history": ["i0", "ghost", "phantom"]})
        assert r.status_code == 404 and r.json()["unknown_item_ids"] == ["ghost", "phantom"]
        # add an item by text; it is recommendable at once
        fresh = {"items": [{"item_id": "fresh", "title": "alpha calm item398", "topic": "alpha"}]}
        assert http.post("/items", json=fresh).status_code == 401  # writes need the key
        r = http.post("/items", json=fresh, headers=KEY)
        assert r.status_code == 200 and r.json()["added"] == ["fresh"]
        twin = {"items": [{"item_id": "fresh", "title": "x", "topic": "y"}]}
        assert http.post("/items", json=twin, headers=KEY).status_code == 400
        assert http.post("/items", json={"items": []}, headers=KEY).status_code == 422
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
    run = [sys.executable, "-m", "textrec.serve.cli"]
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


def test_server_limits_and_write_protection(trained_model_dir, _tiny_bert):
    pytest.importorskip("uvicorn")
    from textrec.serve.app import ServerLimits, create_app

    rec = _fresh_recommender(trained_model_dir, _tiny_bert)
    limits = ServerLimits(max_body_bytes=20_000, max_items_per_request=3, max_added_items=4, max_echoed_ids=2)
    running = _Running(create_app(rec, api_key="secret", limits=limits))
    try:
        with httpx.Client(base_url=running.base, timeout=30) as http:
            big = http.post("/recommend", content=b'{"history": "' + b"x" * 30_000 + b'"}')
            assert big.status_code == 413 and "over the limit" in big.json()["detail"]
            ghosts = http.post("/recommend", json={"history": [f"ghost{i}" for i in range(50)]})
            body = ghosts.json()
            assert ghosts.status_code == 404 and body["unknown_count"] == 50 and len(body["unknown_item_ids"]) == 2
            long_history = http.post("/recommend", json={"history": ["i0"] * 1001})
            assert long_history.status_code == 400 and "at most 1000" in long_history.json()["detail"]
            item = {"title": "alpha", "topic": "alpha"}
            four = {"items": [{"item_id": f"n{i}", **item} for i in range(4)]}
            assert http.post("/items", json=four, headers=KEY).status_code == 422  # over 3 per request
            long_id = {"items": [{"item_id": "x" * 300, **item}]}
            assert http.post("/items", json=long_id, headers=KEY).status_code == 400
            three = {"items": [{"item_id": f"n{i}", **item} for i in range(3)]}
            assert http.post("/items", json=three, headers=KEY).status_code == 200
            two = {"items": [{"item_id": f"m{i}", **item} for i in range(2)]}
            over = http.post("/items", json=two, headers={"authorization": "Bearer secret"})
            assert over.status_code == 400 and "at most 4 added items" in over.json()["detail"]
    finally:
        running.stop()
    closed = _Running(create_app(_fresh_recommender(trained_model_dir, _tiny_bert)))  # no key configured
    try:
        r = httpx.post(f"{closed.base}/items", json={"items": [{"item_id": "a", "title": "t", "topic": "t"}]})
        assert r.status_code == 403 and "--api-key" in r.json()["detail"]
    finally:
        closed.stop()


def test_added_items_survive_a_restart(trained_model_dir, _tiny_bert, tmp_path):
    pytest.importorskip("uvicorn")
    from textrec.serve.app import create_app

    log = tmp_path / "added_items.jsonl"
    first = _Running(create_app(_fresh_recommender(trained_model_dir, _tiny_bert), api_key="secret", items_log=log))
    try:
        new = {"items": [{"item_id": "kept", "title": "alpha calm item398", "topic": "alpha"}]}
        assert httpx.post(f"{first.base}/items", json=new, headers=KEY).status_code == 200
    finally:
        first.stop()
    with open(log, "a") as f:
        f.write('{"item_id": "torn", "tit')  # an append cut short by a crash: never acknowledged
    second = _Running(create_app(_fresh_recommender(trained_model_dir, _tiny_bert), api_key="secret", items_log=log))
    try:
        assert httpx.get(f"{second.base}/healthz").json()["items"] == trained_model_dir[2].num_items + 1
        r = httpx.post(f"{second.base}/similar", json={"item_id": "kept", "k": 3})
        assert r.status_code == 200
    finally:
        second.stop()


def test_cli_bad_folder_and_missing_extra_are_one_line_errors(
    trained_model_dir, tmp_path, monkeypatch, capsys, tiny_bert_dir
):
    import json
    import shutil

    from textrec.serve import cli

    out, items_path, _ = trained_model_dir
    broken = tmp_path / "model"
    shutil.copytree(out, broken)
    config = json.loads((broken / "config.json").read_text())
    config["model"]["encoder"] = config["base_encoder"]["name"] = tiny_bert_dir  # the tiny base, saved on disk
    (broken / "config.json").write_text(json.dumps(config))
    weights = broken / "textrec_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])  # truncated
    common = ["--model", str(broken), "--items", str(items_path), "--cache-dir", str(tmp_path / "c")]
    assert cli.main(["index", *common]) == 2
    err = capsys.readouterr().err
    assert "textrec index:" in err and "unreadable safetensors file" in err and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as without the [serve] extra
    assert cli.main(["serve", *common]) == 2
    assert 'pip install "textrec[serve]"' in capsys.readouterr().err
