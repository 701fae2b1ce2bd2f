"""Evaluate a fixed tiny model under however many processes this is launched with; the main process writes JSON.

python tests/scripts/dist_eval.py OUT.json
accelerate launch --multi_gpu --num_processes 2 tests/scripts/dist_eval.py OUT.json
"""

import json
import os
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conftest  # noqa: E402

from textrec.config import ModelConfig  # noqa: E402
from textrec.data.splits import leave_one_out  # noqa: E402
from textrec.data.synthetic import make_synthetic  # noqa: E402
from textrec.data.text import ItemTemplate  # noqa: E402
from textrec.evaluate.ranking import compute_item_vectors, compute_text_vectors, evaluate, sharded_map  # noqa: E402
from textrec.model.build import build_model, history_text, item_tokens  # noqa: E402


def main(out_path):
    accelerator = Accelerator(cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    data = make_synthetic(num_users=203, num_items=97, seed=3)  # 203 events: uneven shards on purpose
    split = leave_one_out(data)
    tok = conftest.build_tokenizer("bert")
    texts = ItemTemplate("{title}").render_all(data.items)
    result = {"num_processes": accelerator.num_processes}
    for tower in ("sequence", "text"):
        torch.manual_seed(0)
        base = conftest.build_tiny_bert(len(tok))
        cfg = ModelConfig(encoder="tiny", user_tower=tower, id_embedding=True, dim=16, max_history=20)
        model, tok = build_model(cfg, data.num_items, base, tok)
        model.eval()
        tokens = item_tokens(texts, tok, cfg, model)
        vectors = compute_item_vectors(model, compute_text_vectors(model, tokens, 16, accelerator, None))
        for mask in (True, False):
            result[f"{tower}_mask={mask}"] = evaluate(
                model,
                split.test,
                vectors,
                mask_history=mask,
                batch_size=16,
                accelerator=accelerator,
                history_text=history_text(texts, tok, cfg),
            )
        result[f"{tower}_vector_sum"] = float(vectors.double().sum())
    ids = sharded_map(lambda s, e: torch.arange(s, e), len(split.test), 16, accelerator)
    result["event_order"] = ids.tolist()
    accelerator.wait_for_everyone()
    main_process = accelerator.is_main_process
    accelerator.end_training()  # destroys the process group before exit
    # No gloo thread may outlive the group: one still running at interpreter exit can abort it (see textrec/__init__)
    result["gloo_threads_after_end"] = sorted(n for n in _thread_names() if n.startswith(("pt_gloo", "gloo")))
    if main_process:
        Path(out_path).write_text(json.dumps(result))


def _thread_names():
    tasks = Path("/proc/self/task")
    return [(t / "comm").read_text().strip() for t in tasks.iterdir()] if tasks.is_dir() else []


if __name__ == "__main__":
    main(sys.argv[1])
