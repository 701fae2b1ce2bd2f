"""Placement checks: is every tensor of a training run on the accelerator's device, and does every module run there?

On a GPU a tensor left on the CPU either fails loudly (an op mixing devices) or, worse, runs silently on the CPU
(a module whose weights and inputs both stayed there). `training.check_placement` runs these checks after the first
optimizer step of `fit`: every parameter, gradient and buffer of the objective, every optimizer state tensor and the
text-vector cache must be on the device, and every module called during that step must have received its tensor
inputs there. An error names what is not.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def on_device(tensor: torch.Tensor, device: torch.device) -> bool:
    """`tensor` lives on `device` (`cuda` matches `cuda:0` when either leaves the index out)."""
    here, there = tensor.device, torch.device(device)
    if here.type != there.type:
        return False
    return here.index is None or there.index is None or here.index == there.index


def misplaced_tensors(
    device: torch.device,
    module: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, torch.Tensor | None] | None = None,
) -> tuple[list[str], int]:
    """(names of the tensors not on `device`, how many tensors were checked) over a module's parameters, their
    gradients and its buffers, an optimizer's state and any `extra` named tensors."""
    named: list[tuple[str, torch.Tensor]] = []
    if module is not None:
        for name, param in module.named_parameters():
            named.append((name, param))
            if param.grad is not None:
                named.append((f"{name}.grad", param.grad))
        named += list(module.named_buffers())
    if optimizer is not None:
        for index, state in enumerate(optimizer.state.values()):
            named += [(f"optimizer.state[{index}].{k}", v) for k, v in state.items() if torch.is_tensor(v)]
    named += [(name, t) for name, t in (extra or {}).items() if t is not None]
    # Optimizer step counters are 0-dim CPU tensors by design in torch (unless capturable / fused): not data.
    checked = [(n, t) for n, t in named if not (n.startswith("optimizer.") and n.endswith(".step") and t.dim() == 0)]
    return [n for n, t in checked if not on_device(t, device)], len(checked)


def _tensors(values: Iterable) -> Iterable[torch.Tensor]:
    for value in values:
        if torch.is_tensor(value):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _tensors(value)
        elif isinstance(value, dict):
            yield from _tensors(value.values())


class ForwardDeviceProbe:
    """While active (`start` / `stop`, or as a context manager), records every submodule of `module` that is
    called with a tensor input off `device`, and counts the modules called."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.module, self.device = module, torch.device(device)
        self.misplaced: list[str] = []
        self.called: set[str] = set()
        self._handles = []

    def start(self) -> ForwardDeviceProbe:
        for name, sub in self.module.named_modules():
            self._handles.append(sub.register_forward_pre_hook(self._hook(name or "<root>"), with_kwargs=True))
        return self

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ForwardDeviceProbe:
        return self.start()

    def _hook(self, name: str):
        def check(_module, args, kwargs):
            self.called.add(name)
            for tensor in _tensors([args, kwargs]):
                if tensor.dim() > 0 and not on_device(tensor, self.device) and name not in self.misplaced:
                    self.misplaced.append(f"{name} (input on {tensor.device})")

        return check

    def __exit__(self, *exc) -> None:
        self.stop()


def placement_report(probe: ForwardDeviceProbe, module, optimizer, extra, device) -> dict:
    """Check a run after its first step (see the module docstring): a summary dict, or RuntimeError naming every
    tensor and module off `device`."""
    tensors, checked = misplaced_tensors(device, module, optimizer, extra)
    problems = tensors + probe.misplaced
    if problems:
        shown = ", ".join(problems[:20]) + (f" and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise RuntimeError(f"training.check_placement: not on {device}: {shown}")
    return {"device": str(device), "tensors_checked": checked, "modules_called": len(probe.called)}


__all__ = ["ForwardDeviceProbe", "misplaced_tensors", "on_device", "placement_report"]
