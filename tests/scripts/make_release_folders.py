"""Write the model folders of tests/fixtures/release_0_1_0/ with textrec 0.1.0 as released (commit 7b6a9b4):

    git worktree add /tmp/old 7b6a9b4
    PYTHONPATH=/tmp/old:/tmp/old/tests python tests/scripts/make_release_folders.py tests/fixtures/release_0_1_0

A text model (the tests' tiny BERT + LoRA + ids + bias) and an ID-only model, trained a few steps on synthetic data,
saved with that release's `save_pretrained`, plus `expected.json`: the scores that release's free functions gave
for a few histories. tests/test_textrec_model.py loads the folders with today's code and compares.
"""

import json
import sys
from pathlib import Path

import torch
from conftest import build_tiny_bert, build_tokenizer
from textrec.build import build_model, item_tokens
from textrec.engine import LoopConfig, WindowExamples, fit, make_accelerator
from textrec.evaluation import compute_item_vectors, compute_text_vectors, encode_histories
from textrec.features import all_targets
from textrec.hub import save_pretrained
from textrec.objectives import TrainingObjective
from textrec.splits import leave_one_out
from textrec.synthetic import make_synthetic
from textrec.text import ItemTemplate

from textrec.config import ModelConfig

HISTORIES = [[0, 5, 9], [3], [10, 11, 12, 13]]


def main(out: Path) -> None:
    data = make_synthetic(num_users=60, num_items=40, seed=2)
    split = leave_one_out(data)
    template = ItemTemplate("{title}")
    expected = {}
    for name, encoder in (("text", "tiny-bert"), ("id_only", None)):
        cfg = ModelConfig(encoder=encoder, id_embedding=True, item_bias=encoder is not None, dim=16, max_history=10,
                          seq_layers=1, lora_r=4, lora_dropout=0.0, seq_dropout=0.0)  # fmt: skip
        tok = build_tokenizer("bert")
        base = build_tiny_bert(len(tok)) if encoder else None
        torch.manual_seed(0)
        model, tok = build_model(cfg, data.num_items, base, tok if encoder else None)
        tokens = item_tokens(template.render_all(data.items), tok, cfg, model) if encoder else None
        objective = TrainingObjective(model, tokens, torch.ones(data.num_items)).configure(max_live_items=16)
        loop = LoopConfig(epochs=2, batch_size=16, lr=1e-2, encoder_lr=1e-2, progress=False)
        fit(objective, WindowExamples(all_targets(split.train), 10), loop, make_accelerator(loop))
        model.eval()
        with torch.no_grad():
            text = compute_text_vectors(model, tokens, desc=None) if encoder else None
            items = compute_item_vectors(model, text, data.num_items)
            users = encode_histories(model, HISTORIES, items)
            scores = model.score(users, items, torch.arange(data.num_items))
        save_pretrained(model, out / name, cfg, data.item_ids, tokenizer=tok if encoder else None,
                        item_template=template.template)  # fmt: skip
        expected[name] = scores.tolist()
    (out / "expected.json").write_text(json.dumps({"histories": HISTORIES, "scores": expected}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
