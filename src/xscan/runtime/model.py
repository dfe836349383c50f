"""The common part of the runtime's models: session, spec, preprocessing, batching, tiling."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from xscan.preprocess import LetterboxInfo, prepare
from xscan.runtime.metadata import ModelFileError, file_sha256, spec_from_metadata
from xscan.runtime.prediction import Prediction
from xscan.runtime.session import open_session
from xscan.runtime.tiling import Tile, should_tile, tile_grid
from xscan.spec import ModelSpec

TILING_MODES = ("auto", "always", "never")


class OnnxModel:
    """An exported xscan model over onnxruntime. Use :class:`Detector` or
    :class:`AnomalyScorer` (or :func:`xscan.runtime.load_model`, which picks by ``spec.task``).

    Images are what :func:`xscan.imageio.read_image` returns (``(H, W, 3) uint8/uint16`` RGB,
    ``(H, W) uint8/uint16`` gray) or a raw dual-energy ``(H, W, 2) float32`` pair from
    :func:`xscan.imageio.read_raw_pair`. Preprocessing is :func:`xscan.preprocess.prepare`,
    the same function training uses.

    ``tiling``: ``auto`` cuts a scan into overlapping tiles when fitting it whole would
    shrink it more than ``max_downscale`` times (default: the model's
    ``spec.tile_max_downscale``); ``always`` / ``never`` force it. A tile
    covers ``tile_scale`` x the input size of the original image (1.0: the input size at
    native resolution; 2.0: twice that, halved on the way in), overlapping by
    ``spec.tile_overlap``.
    """

    task = ""

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | str | None = None,
        threads: int | None = None,
        tiling: str = "auto",
        max_downscale: float | None = None,
        batch_size: int = 8,
        tile_scale: float = 1.0,
    ):
        self.path = Path(path)
        self.session = open_session(self.path, providers=providers, threads=threads)
        self.spec: ModelSpec = spec_from_metadata(self.session.metadata, str(self.path))
        if self.task and self.spec.task != self.task:
            raise ModelFileError(
                f"{self.path}: spec.task is {self.spec.task!r}; {type(self).__name__} needs "
                f"{self.task!r} (use xscan.runtime.load_model to pick the right class)"
            )
        self._check_input()
        if tiling not in TILING_MODES:
            raise ValueError(f"tiling: expected one of {TILING_MODES}, got {tiling!r}")
        self.tiling = tiling
        self.max_downscale = float(
            self.spec.tile_max_downscale if max_downscale is None else max_downscale
        )
        if not tile_scale > 0:
            raise ValueError(f"tile_scale: expected > 0, got {tile_scale}")
        self.tile_scale = float(tile_scale)
        self.batch_size = max(1, int(batch_size))
        self.model_sha256 = file_sha256(self.path)
        self.providers: list[str] = list(self.session.providers)

    @classmethod
    def from_onnx(cls, path: str | Path, **kwargs) -> OnnxModel:
        """Open ``path`` (see the class docstring for the keyword arguments)."""
        return cls(path, **kwargs)

    def _check_input(self) -> None:
        inputs = self.session.session.get_inputs()
        if not inputs:
            raise ModelFileError(f"{self.path}: the model has no input")
        shape = inputs[0].shape
        want = [self.spec.in_channels, *self.spec.input_size]
        got = list(shape[1:]) if len(shape) == 4 else None
        fixed = got is not None and all(isinstance(s, int) for s in got)
        if got is None or (fixed and got != want):
            raise ModelFileError(
                f"{self.path}: input {inputs[0].name!r} has shape {shape}; the spec says "
                f"(batch, {want[0]}, {want[1]}, {want[2]})"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, name={self.spec.name!r}, "
            f"providers={self.providers})"
        )

    # ----------------------------------------------------------------- thresholds
    def resolve_threshold(self, threshold: float | None) -> float:
        """The per-call threshold, or the spec's calibrated operating point."""
        return float(self.spec.alarm_threshold if threshold is None else threshold)

    # --------------------------------------------------------------- preprocessing
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxInfo]:
        """Image -> ``(C, H, W) float32`` network input in [0, 1] and its letterbox info."""
        return prepare(image, self.spec)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw model outputs for ``(B, C, H, W) float32`` inputs."""
        return self.session.run(batch)

    def infer_prepared(
        self, batch: np.ndarray, infos: Sequence[LetterboxInfo], threshold: float | None = None
    ) -> list[Prediction]:
        """Predictions for a prepared batch ``(B, C, H, W) float32`` and its letterbox infos."""
        batch = np.asarray(batch, np.float32)
        if batch.ndim != 4 or len(batch) != len(infos):
            raise ValueError(
                f"infer_prepared: expected (B, C, H, W) with B = len(infos) = {len(infos)}, "
                f"got {batch.shape}"
            )
        if len(batch) == 0:
            return []
        return self._infer(batch, list(infos), self.resolve_threshold(threshold))

    def _infer(
        self, batch: np.ndarray, infos: list[LetterboxInfo], threshold: float
    ) -> list[Prediction]:
        """Run a checked, non-empty prepared batch and decode it."""
        return self._decode(self.run(batch), infos, threshold)

    # ----------------------------------------------------------------- prediction
    def wants_tiling(self, image: np.ndarray, tiling: str | None = None) -> bool:
        """Whether ``image`` is scored in tiles (see the class docstring for the modes)."""
        h, w = image.shape[:2]
        return self.wants_tiling_hw(h, w, tiling)

    def wants_tiling_hw(self, h: int, w: int, tiling: str | None = None) -> bool:
        """:meth:`wants_tiling` for an image of ``h x w`` pixels not decoded yet."""
        mode = tiling or self.tiling
        if mode not in TILING_MODES:
            raise ValueError(f"tiling: expected one of {TILING_MODES}, got {mode!r}")
        if mode == "never":
            return False
        if mode == "always":
            return True
        return should_tile(h, w, self.spec.input_size, self.max_downscale)

    def predict(
        self, image: np.ndarray, threshold: float | None = None, tiling: str | None = None
    ) -> Prediction:
        """Prediction for one image (tiled when the image is much larger than the input)."""
        return self.predict_batch([image], threshold=threshold, tiling=tiling)[0]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        threshold: float | None = None,
        tiling: str | None = None,
    ) -> list[Prediction]:
        """Predictions for several images, run in batches of ``batch_size``."""
        thr = self.resolve_threshold(threshold)
        out: list[Prediction | None] = [None] * len(images)
        whole = []
        for i, img in enumerate(images):
            if self.wants_tiling(img, tiling):
                out[i] = self._predict_tiled(img, thr)
            else:
                whole.append(i)
        for start in range(0, len(whole), self.batch_size):
            idx = whole[start : start + self.batch_size]
            prepared = [self.prepare(images[i]) for i in idx]
            batch = np.stack([p[0] for p in prepared])
            preds = self.infer_prepared(batch, [p[1] for p in prepared], thr)
            for i, p in zip(idx, preds, strict=True):
                out[i] = p
        return out  # type: ignore[return-value]

    def _tiles(self, image: np.ndarray) -> list[Tile]:
        h, w = image.shape[:2]
        window = tuple(max(1, round(s * self.tile_scale)) for s in self.spec.input_size)
        return tile_grid(h, w, window, self.spec.tile_overlap)

    def _tile_batches(
        self, image: np.ndarray, tiles: list[Tile]
    ) -> Iterator[tuple[list[LetterboxInfo], dict[str, np.ndarray]]]:
        """``(letterbox infos, raw outputs)`` for each batch of up to ``batch_size`` tiles."""
        for start in range(0, len(tiles), self.batch_size):
            chunk = tiles[start : start + self.batch_size]
            prepared = [self.prepare(image[t.y0 : t.y1, t.x0 : t.x1]) for t in chunk]
            yield [p[1] for p in prepared], self.run(np.stack([p[0] for p in prepared]))

    def _run_tiles(
        self, image: np.ndarray, tiles: list[Tile], threshold: float
    ) -> list[Prediction]:
        """Per-tile predictions, in tile pixel coordinates."""
        preds: list[Prediction] = []
        for infos, outputs in self._tile_batches(image, tiles):
            preds.extend(self._decode(outputs, infos, threshold))
        return preds

    # ------------------------------------------------------------- task specific
    def _decode(
        self, outputs: dict[str, np.ndarray], infos: list[LetterboxInfo], threshold: float
    ) -> list[Prediction]:
        raise NotImplementedError

    def _predict_tiled(self, image: np.ndarray, threshold: float) -> Prediction:
        raise NotImplementedError
