"""Atomic writes: a crash never leaves half a file or half a folder behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_dir(target: str | Path):
    """Context manager: yields a temporary folder that replaces `target` when the block succeeds."""
    return _AtomicDir(Path(target))


class _AtomicDir:
    def __init__(self, target: Path):
        self.target = target

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def save_keyed_tensors(path: str | Path, tensors: dict, key: str) -> None:
    """Write `tensors` (and `key`) to a safetensors file atomically: a cache entry that `load_keyed_tensors` reads
    back only for the same key."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    stored["key"] = torch.tensor(list(key.encode()), dtype=torch.uint8)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(stored, str(tmp))
    os.replace(tmp, path)


def load_keyed_tensors(path: str | Path, key: str) -> dict | None:
    """The tensors `save_keyed_tensors` wrote to `path` under `key` (without it), or None: no file or another key."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        return None
    stored = load_file(str(path))
    if stored.get("key") is None or bytes(stored.pop("key").tolist()).decode() != key:
        return None
    return stored
