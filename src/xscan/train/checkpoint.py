"""Checkpoints: ``{"model", "optimizer", "epoch", "spec", "config", ...}``.

Everything in a checkpoint is tensors or plain Python containers, so loading uses
``torch.load(weights_only=True)`` and never unpickles arbitrary objects.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from xscan.spec import ModelSpec


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """A content hash of a state dict (names, dtypes, shapes and values), order independent."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, **payload: Any) -> Path:
    """Write a checkpoint atomically (temp file then rename). ``spec`` may be a ModelSpec."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(payload.get("spec"), ModelSpec):
        payload["spec"] = payload["spec"].to_dict()
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; ``ckpt["spec"]`` is returned as a validated ModelSpec."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise ValueError(f"{path}: not a readable xscan checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "spec" not in ckpt:
        raise ValueError(f"{path}: not an xscan checkpoint (expected keys 'model' and 'spec')")
    ckpt["spec"] = ModelSpec.from_dict(ckpt["spec"], source=f"{path}: spec")
    return ckpt
