"""Training checkpoints: atomic folders of safetensors and JSON, nothing unpickled on load.

`<root>/step_N/` holds trainable.safetensors (the weights that train: LoRA, heads, id rows, sequence tower; never
the frozen base), best.safetensors (the best validated weights so far), optimizer.safetensors + the optimizer's
JSON (param groups, scalar state), cache.safetensors (the item text-vector cache), rng_<rank>.safetensors (each
process's torch RNG) and state.json (loop position, scheduler, gradient scaler, the run config). A checkpoint is
written into `.tmp_step_N/` and appears as `step_N/` with one rename, after every process has written its part.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from textrec.files import atomic_write_text

logger = logging.getLogger(__name__)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights (what a checkpoint holds of the model)."""
    return {n: p.detach().cpu().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> None:
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(named) != set(state):
        missing, extra = sorted(set(named) - set(state)), sorted(set(state) - set(named))
        raise ValueError(
            f"{where}: trainable weights do not match the model (missing {missing[:3]}, extra {extra[:3]})"
        )
    with torch.no_grad():
        for name, param in named.items():
            param.copy_(state[name].to(param.device, param.dtype))


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# Fields that say where a run lives or how it reports, not what it trains: a moved or re-watched run still resumes.
NOT_COMPARED = ("output_dir", "resume", "log_with", "progress")


def config_differences(saved: Mapping, current: Mapping, ignore: Sequence[str] = NOT_COMPARED) -> list[str]:
    """Fields (dotted names) whose values differ between two run configs, except those whose last part is in
    `ignore`."""
    a, b = _flatten(saved), _flatten(current)
    keys = [k for k in set(a) | set(b) if k.rsplit(".", 1)[-1] not in ignore]
    return sorted(k for k in keys if a.get(k) != b.get(k))


class Checkpoints:
    """`<root>/step_N/`: trainable.safetensors, best.safetensors, optimizer.safetensors + optimizer.json,
    cache.safetensors, rng_<rank>.safetensors, state.json (loop state, scheduler, run config)."""

    def __init__(self, root: Path, config, accelerator):
        """`config`: the loop's `LoopConfig` (resume mode, checkpoints kept)."""
        self.root, self.config, self.accelerator = root, config, accelerator

    def all(self) -> list[Path]:
        found = [p for p in self.root.glob("step_*") if (p / "state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name.split("_")[1]))

    def find_resume(self) -> Path | None:
        mode = self.config.resume
        if mode == "never":
            if self.accelerator.is_main_process and self.root.exists():
                shutil.rmtree(self.root)
            self.accelerator.wait_for_everyone()
            return None
        if mode == "auto":
            found = self.all()
            return found[-1] if found else None
        path = Path(mode)
        if not (path / "state.json").is_file():
            raise ValueError(f"training.resume: {path} is not a textrec checkpoint folder (no state.json)")
        return path

    def save(self, model, optimizer, scheduler, cache, state, best, run_config) -> None:
        acc = self.accelerator
        tmp, final = self.root / f".tmp_step_{state.global_step}", self.root / f"step_{state.global_step}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        save_file(rng, str(tmp / f"rng_{acc.process_index}.safetensors"))
        acc.wait_for_everyone()  # every process's file is in before the folder is renamed
        if acc.is_main_process:
            save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
            if best is not None:
                save_file(best, str(tmp / "best.safetensors"))
            tensors, meta = _optimizer_files(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            if cache.vectors is not None:
                save_file({"vectors": cache.vectors.detach().cpu().contiguous()}, str(tmp / "cache.safetensors"))
            scaler = acc.scaler.state_dict() if getattr(acc, "scaler", None) is not None else None
            document = {
                "loop": asdict(state),
                "optimizer": meta,
                "scheduler": scheduler.state_dict(),
                "scaler": scaler,
                "cache_refreshed_at": cache.refreshed_at,
                "processes": acc.num_processes,
                "run_config": run_config,
            }
            atomic_write_text(tmp / "state.json", json.dumps(document))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self.all()[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)
        acc.wait_for_everyone()

    def load(self, path: Path, model, optimizer, scheduler, cache, state, run_config) -> dict | None:
        document = _read_json(path / "state.json")
        differences = config_differences(document.get("run_config", {}), run_config)
        if differences:
            raise ValueError(
                f"{path}: this checkpoint was made with another config; differing fields: {', '.join(differences)}. "
                "Resume with the same config, set training.resume=never to start afresh, or choose a new output_dir"
            )
        if document["processes"] != self.accelerator.num_processes:
            logger.warning(
                f"{path}: saved with {document['processes']} processes, resuming with "
                f"{self.accelerator.num_processes}: the data order of the rest of the epoch changes"
            )
        load_trainable_state(model, _read_tensors(path / "trainable.safetensors"), str(path))
        optimizer.load_state_dict(
            _optimizer_state(_read_tensors(path / "optimizer.safetensors"), document["optimizer"])
        )
        scheduler.load_state_dict(document["scheduler"])
        if document.get("scaler") and getattr(self.accelerator, "scaler", None) is not None:
            self.accelerator.scaler.load_state_dict(document["scaler"])
        if (path / "cache.safetensors").is_file():
            cache.refresh(_read_tensors(path / "cache.safetensors")["vectors"], document["cache_refreshed_at"])
        for key, value in document["loop"].items():
            setattr(state, key, value)
        best_file = path / "best.safetensors"
        return _read_tensors(best_file) if best_file.is_file() else None

    def load_rng(self, path: Path) -> None:
        file = path / f"rng_{self.accelerator.process_index}.safetensors"
        if not file.is_file():  # resumed with more processes than saved: the new ranks start from their seed
            return
        rng = _read_tensors(file)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable checkpoint state ({err})") from err


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types: name the file
        raise ValueError(f"{path}: unreadable checkpoint tensors ({err})") from err


def _optimizer_files(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state_dict as safetensors tensors plus a JSON document (no pickle)."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}
