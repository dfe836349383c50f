"""Reading an exported model's spec from its ONNX metadata, without the ``onnx`` package.

The base install has only onnxruntime, so the spec is read from
``InferenceSession.get_modelmeta().custom_metadata_map[METADATA_KEY]``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from xscan.spec import METADATA_KEY, ModelSpec, SpecError


class ModelFileError(ValueError):
    """A model file cannot be used; the message names the file and the reason."""


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def spec_from_metadata(metadata: dict[str, str], source: str) -> ModelSpec:
    """Parse the spec stored under ``metadata[METADATA_KEY]``; errors name ``source``."""
    text = metadata.get(METADATA_KEY)
    if text is None:
        keys = sorted(metadata) or "none"
        raise ModelFileError(
            f"{source}: not an xscan model: no '{METADATA_KEY}' metadata "
            f"(metadata keys: {keys}); export it with `xscan export`"
        )
    try:
        return ModelSpec.from_json(text, source=f"{source}: {METADATA_KEY}")
    except SpecError as e:
        raise ModelFileError(str(e)) from e


def read_spec(path: str | Path) -> ModelSpec:
    """Read the spec of an ONNX model file."""
    from xscan.runtime.session import read_metadata

    return spec_from_metadata(read_metadata(path), str(path))
