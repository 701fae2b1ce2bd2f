"""The parts of the GPU check (scripts/gpu_check.py runs each in its own process with a time limit).

    python scripts/gpu_parts.py NAME --work DIR [--device cuda|cpu] [--tiny] [--e1-minutes M]

writes DIR/NAME.json: {"summary": {the figures of the table}, ...details}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ML1M_TEXT = (
    "recipes/configs/ml1m_minilm_frozen.yaml"  # the best ML-1M text model on validation (docs/benchmarks/ml1m.md)
)
ML1M_IDS = "recipes/configs/ml1m_idonly.yaml"
MAIN_JOB = "recipes/configs/ml100k_minilm.yaml"
CPU_E1_FIGURE = 0.1747  # ML-1M test NDCG@10 masked of that model, 40 CPU minutes (docs/benchmarks/ml1m.md)
SPEC_BF16_PEAK = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12}  # dense bf16 FLOP/s (SXM data sheets)
TINY = ["data.format=synthetic", "data.synthetic_users=80", "data.synthetic_items=50", "data.item_template=null",
        "model.max_history=20", "model.dim=32", "training.eval_batch_size=64", "training.batch_size=16"]  # fmt: skip
# LoRA on the best ML-1M text model, every item live at every step (the GPU setting), LoRA joining when the frozen
# warm-up stalls; encoder lr and LoRA targets as chosen on ml-100k validation
# (docs/benchmarks/selection_lora_ml100k.md)
LIVE = ["model.train_mode=lora", "training.live_catalogue=true", "training.encoder_lr=2e-4",
        "training.text_cache_dir=null", "training.checkpoint_every=0"]  # fmt: skip


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def recipe(config: str, overrides: list[str], out: Path, tiny: bool) -> dict:
    """Run recipes/train.py afresh into `out`; its metrics.json."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "recipes/train.py", "--config", config, *overrides, *(TINY if tiny else []),
           f"training.output_dir={out}", "training.resume=never", "training.progress=false"]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "metrics.json").read_text())


def test_figures(metrics: dict) -> dict:
    res = metrics["results"]
    return {
        "test_ndcg@10_masked": round(res["test_mask=True"]["ndcg@10"], 4),
        "test_ndcg@10_unmasked": round(res["test_mask=False"]["ndcg@10"], 4),
        "valid_ndcg@10": round(metrics["best_valid_ndcg@10"], 4),
        "epochs": metrics["epochs"],
        "train_s": round(metrics["train_seconds"], 1),
    }


def part_env(args) -> dict:
    import accelerate
    import peft
    import transformers

    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    summary = {
        "device_name": props.name if cuda else platform.processor() or platform.machine(),
        "memory_gib": round(props.total_memory / 2**30, 1) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": torch.cuda.is_bf16_supported() if cuda else True,
    }
    versions = {m.__name__: m.__version__ for m in (transformers, peft, accelerate)}
    return {"summary": summary, **summary, "python": platform.python_version(), "versions": versions}


def part_placement(args) -> dict:
    """The quickstart and the main job's config in bf16, each with `check_placement` (raises if anything is off)."""
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    work = Path(args.work)
    steps = "4" if args.tiny else "30"
    qs = quickstart.main(["--output-dir", str(work / "quickstart"), "--steps", steps, "--mixed-precision", "bf16",
                          "--check-placement"])  # fmt: skip
    overrides = ["training.mixed_precision=bf16", "training.check_placement=true", "training.encoder_warmup_epochs=0",
                 f"training.max_steps={3 if args.tiny else 30}", "training.checkpoint_every=0"]  # fmt: skip
    main_job = recipe(MAIN_JOB, overrides, work / "main_job", args.tiny)
    summary = {
        "quickstart": f"{qs['fit'].placement['tensors_checked']} tensors / {qs['fit'].placement['modules_called']} "
        f"modules on {qs['fit'].placement['device']}, test NDCG@10 {qs['ndcg']['trained model']:.4f}",
        "main_job": f"{main_job['placement']['tensors_checked']} tensors / {main_job['placement']['modules_called']} "
        f"modules on {main_job['placement']['device']}, {main_job['optimizer_steps']} steps",
    }
    return {"summary": summary, "quickstart": qs["fit"].placement, "main_job": main_job["placement"],
            "main_job_metrics": test_figures(main_job)}  # fmt: skip


def matmul_peak(device, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    return 2 * n**3 * 10 / (time.perf_counter() - started)


def lora_step(encoder, ids, mask, device, steps: int) -> dict:
    """Time one LoRA training step (bf16 autocast forward + backward + AdamW) and count its FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = encoder(ids, mask).float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - started) / steps
    flops = counter.get_total_flops()
    memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"items": int(ids.shape[0]), "tokens": int(mask.sum()), "padded_tokens": int(ids.numel()),
            "step_ms": round(1000 * seconds, 2), "flop_per_step": flops, "tflop_per_step": round(flops / 1e12, 4),
            "tflops": round(flops / seconds / 1e12, 3), "peak_gib": memory and round(memory, 2)}  # fmt: skip


def catalogue_tokens(args):
    """MiniLM's tokens of the ML-1M item texts (synthetic items with --tiny), padded to 32 tokens at most."""
    from textrec.config import DataConfig
    from textrec.data import load_data
    from textrec.data.features import ItemTokens
    from textrec.data.text import tokenize_texts
    from textrec.model.build import item_template
    from textrec.model.encoders import load_encoder_and_tokenizer

    if args.tiny:
        cfg = DataConfig(format="synthetic", synthetic_users=80, synthetic_items=50)
    else:
        cfg = DataConfig(path="data/ml-1m", item_template="{movie_title} ({release_year}). Genres: {genre}")
    data = load_data(cfg)
    base, tokenizer = load_encoder_and_tokenizer("minilm")
    ds = tokenize_texts(item_template(data, cfg).render_all(data.items), tokenizer, 32)
    return base, ItemTokens(ds["input_ids"], tokenizer.pad_token_id)


def part_throughput(args) -> dict:
    from transformers import LlamaConfig, LlamaModel

    from textrec.model.encoders import TextEncoder, apply_train_mode

    device = torch.device(args.device)
    minilm, tokens = catalogue_tokens(args)
    n = len(tokens)
    peak = matmul_peak(device, 512 if args.tiny else 8192)
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    spec = next((v for k, v in SPEC_BF16_PEAK.items() if k in name), None)
    rows = []
    if args.tiny:
        smol = LlamaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=128)  # fmt: skip
    else:
        smol = LlamaConfig.from_dict(
            json.loads((ROOT / os.environ.get("GPU_CHECK_ASSETS", ".gpu") / "smollm2_config.json").read_text())
        )
    encoders = {
        "MiniLM-L6 (pretrained)": (minilm, "mean"),
        "SmolLM2-135M shape (random init)": (LlamaModel(smol), "last"),
    }
    for label, (base, pooling) in encoders.items():
        encoder = TextEncoder(apply_train_mode(base, "lora"), pooling).to(device)
        sizes = [8, n] if args.tiny else ([256, 1024, n] if "MiniLM" in label else [256, 1024])
        for size in sizes:
            ids, mask = tokens.batch([i % n for i in range(size)], device=device)
            if "SmolLM2" in label:  # the same lengths, token ids of its own vocabulary
                ids = torch.randint(0, smol.vocab_size, ids.shape, device=device) * mask
            row = {"encoder": label, **lora_step(encoder, ids, mask, device, 3 if args.tiny else 10)}
            row["mfu_vs_matmul"] = round(row["tflops"] * 1e12 / peak, 4)
            row["mfu_vs_spec"] = spec and round(row["tflops"] * 1e12 / spec, 4)
            rows.append(row)
            print(row, flush=True)
        del encoder
    summary = {}
    for r in rows:
        mfu = r["mfu_vs_spec"] if r["mfu_vs_spec"] is not None else r["mfu_vs_matmul"]
        summary[f"{r['encoder'].split(' ')[0]} x{r['items']}"] = f"{r['step_ms']} ms, {r['tflops']} TFLOP/s, MFU {mfu}"
    summary["bf16 matmul peak"] = f"{peak / 1e12:.1f} TFLOP/s"
    return {"summary": summary, "rows": rows, "matmul_peak_tflops": round(peak / 1e12, 1),
            "spec_peak_tflops": spec and spec / 1e12}  # fmt: skip


def part_idonly_epoch(args) -> dict:
    overrides = ["training.epochs=2", "training.mixed_precision=bf16", "training.patience=100",
                 "training.max_train_minutes=0", "training.checkpoint_every=0"]  # fmt: skip
    metrics = recipe(ML1M_IDS, overrides, Path(args.work) / "idonly", args.tiny)
    seconds = [c["train_seconds"] for c in metrics["curve"] if "valid_ndcg@10" in c]
    epochs = [seconds[0]] + [b - a for a, b in zip(seconds, seconds[1:])]
    summary = {
        "epoch_s": " / ".join(f"{s:.1f}" for s in epochs),
        "valid_ndcg@10": round(metrics["best_valid_ndcg@10"], 4),
    }
    return {"summary": summary, "epoch_seconds": epochs, **test_figures(metrics)}


def part_e1_live(args) -> dict:
    minutes = args.e1_minutes if not args.tiny else 0.1
    overrides = LIVE + ["training.mixed_precision=bf16", f"training.max_train_minutes={minutes}",
                        "training.encoder_warmup_epochs=60", "training.encoder_warmup_patience=2",
                        "training.patience=3", "training.check_placement=true"]  # fmt: skip
    if args.tiny:
        overrides += ["training.encoder_warmup_epochs=2", "training.epochs=4"]
    metrics = recipe(ML1M_TEXT, overrides, Path(args.work) / "e1_live", args.tiny)
    figures = test_figures(metrics)
    summary = {**figures, "joined_after_epoch": metrics["encoder_joined_after_epoch"], "stopped": metrics["stopped"],
               "vs CPU 0.1747": round(figures["test_ndcg@10_masked"] / CPU_E1_FIGURE, 3)}  # fmt: skip
    return {"summary": summary, "overrides": overrides, "curve": metrics["curve"], "placement": metrics["placement"],
            "peak_memory_mb": metrics["peak_memory_mb"], **figures}  # fmt: skip


def part_parity(args) -> dict:
    """The e1_live settings for a fixed 1 frozen + 1 live epoch, in fp32 and in bf16."""
    runs = {}
    for precision in ("no", "bf16"):
        overrides = LIVE + [f"training.mixed_precision={precision}", "training.epochs=2", "training.patience=100",
                            "training.encoder_warmup_epochs=1", "training.max_train_minutes=0"]  # fmt: skip
        metrics = recipe(ML1M_TEXT, overrides, Path(args.work) / f"parity_{precision}", args.tiny)
        curve = [round(c["valid_ndcg@10"], 4) for c in metrics["curve"] if "valid_ndcg@10" in c]
        runs["fp32" if precision == "no" else "bf16"] = {"valid_per_epoch": curve, **test_figures(metrics)}
    summary = {k: f"valid {v['valid_per_epoch']}, test {v['test_ndcg@10_masked']}, {v['train_s']} s"
               for k, v in runs.items()}  # fmt: skip
    summary["bf16 - fp32 (last valid)"] = round(
        runs["bf16"]["valid_per_epoch"][-1] - runs["fp32"]["valid_per_epoch"][-1], 4
    )
    return {"summary": summary, **runs}


PARTS = {
    "env": part_env,
    "placement": part_placement,
    "throughput": part_throughput,
    "idonly_epoch": part_idonly_epoch,
    "e1_live": part_e1_live,
    "parity": part_parity,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--work", required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--e1-minutes", type=float, default=4.0)
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    result = PARTS[args.part](args)
    path = Path(args.work) / f"{args.part}.json"
    path.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
