"""push_to_hub without the network: a fake HfApi records exactly what would be uploaded."""

import logging
from pathlib import Path

import pytest

from textrec.model.card import model_card
from textrec.model.hub import push_or_explain, push_to_hub


class FakeApi:
    def __init__(self, remote_card: str | None = None, fail: bool = False):
        self.remote_card, self.fail, self.calls = remote_card, fail, []

    def create_repo(self, repo_id, private=False, exist_ok=False):
        if self.fail:
            raise ConnectionError("no network")
        self.calls.append(("create_repo", repo_id, private))
        return f"https://huggingface.co/{repo_id}"

    def file_exists(self, repo_id, filename):
        return self.remote_card is not None

    def hf_hub_download(self, repo_id, filename):
        path = Path(self.tmp) / "remote_README.md"
        path.write_text(self.remote_card)
        return str(path)

    def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns):
        import fnmatch

        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        kept = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in ignore_patterns)]
        self.calls.append(("upload_folder", repo_id, kept))


def _uploaded(api):
    return next(c[2] for c in api.calls if c[0] == "upload_folder")


def test_push_uploads_the_model_folder(trained_model_dir, tmp_path):
    out = trained_model_dir[0]
    api = FakeApi()
    url = push_to_hub(out, "me/textrec-test", private=True, api=api)
    assert url == "https://huggingface.co/me/textrec-test"
    assert api.calls[0] == ("create_repo", "me/textrec-test", True)
    files = _uploaded(api)
    for name in (
        "config.json",
        "adapter_config.json",
        "adapter_model.safetensors",
        "textrec_weights.safetensors",
        "README.md",
        "item_ids.json",
        "tokenizer.json",
    ):
        assert name in files
    assert "model.safetensors" not in files  # never the frozen base


def test_push_keeps_a_card_edited_on_the_hub(trained_model_dir, tmp_path):
    api = FakeApi(remote_card="# My own words about this model\n")
    api.tmp = tmp_path
    push_to_hub(trained_model_dir[0], "me/x", api=api)
    assert "README.md" not in _uploaded(api)
    generated = model_card(
        {"model": {"user_tower": "sequence", "similarity": "cosine", "temperature": 0.1, "train_mode": "lora"}}
    )
    api = FakeApi(remote_card=generated)
    api.tmp = tmp_path
    push_to_hub(trained_model_dir[0], "me/x", api=api)
    assert "README.md" in _uploaded(api)  # an untouched generated card is updated


def test_failed_push_logs_how_to_push_by_hand(trained_model_dir, caplog):
    with caplog.at_level(logging.ERROR):
        assert push_or_explain(trained_model_dir[0], "me/x", api=FakeApi(fail=True)) is None
    assert "textrec push --model" in caplog.text and "no network" in caplog.text
    assert (trained_model_dir[0] / "config.json").is_file()  # the run is still there


def test_push_refuses_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a textrec model folder"):
        push_to_hub(tmp_path, "me/x", api=FakeApi())
