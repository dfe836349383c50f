"""Threat detector over onnxruntime."""

from __future__ import annotations

import numpy as np

from xscan.preprocess import LetterboxInfo, boxes_from_view, scan_scores_from_views, scan_view
from xscan.runtime.metadata import ModelFileError
from xscan.runtime.model import OnnxModel
from xscan.runtime.prediction import Prediction, empty_detections
from xscan.runtime.tiling import merge_tile_detections
from xscan.spec import DETECTOR_OUTPUTS, VIEW_SCORES


class Detector(OnnxModel):
    """An exported detector: outputs ``boxes (B, K, 4)`` xyxy input pixels, ``scores (B, K)``,
    ``classes (B, K) int64``, ``num_dets (B,) int64`` (first ``num_dets[b]`` rows valid).

    Reported detections are those with score >= ``spec.score_threshold``, boxes mapped back
    to original pixels; the image score is the highest detection score (0 when none) and
    the alarm is ``image_score >= threshold`` (default: the spec's operating point).

    ``spec.scan_views`` > 1: files exported with views run them inside the graph
    (:mod:`xscan.models.inference`): their detections come from the views' merged heatmaps,
    and the image score of each pass is the mean over views of each view's top score (a view
    below ``spec.score_threshold`` counting 0), with the views' scores in
    ``extra["view_scores"]``. A file exported with one view whose spec is given more views
    (``xscan eval --scan-views``) runs them here instead, in one batch: the same scan score,
    with detections from the input as it is. A tiled scan's score is its highest detection
    score over the tiles.
    """

    task = "detect"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        missing = [n for n in DETECTOR_OUTPUTS if n not in self.session.output_names]
        if missing:
            raise ModelFileError(
                f"{self.path}: detector outputs {missing} missing (has "
                f"{self.session.output_names}; expected {list(DETECTOR_OUTPUTS)})"
            )
        self.graph_views = 1
        if VIEW_SCORES in self.session.output_names:
            self.graph_views = self.spec.scan_views
            if self.graph_views < 2:
                raise ModelFileError(
                    f"{self.path}: the graph returns {VIEW_SCORES} but its spec has "
                    f"scan_views {self.spec.scan_views}"
                )

    def _make(self, boxes, scores, classes, threshold: float, tiles: int = 1) -> Prediction:
        names = self.spec.class_names
        labels = [names[c] if 0 <= c < len(names) else str(int(c)) for c in classes]
        image_score = float(scores.max()) if len(scores) else 0.0
        return Prediction(
            boxes=boxes,
            scores=scores,
            classes=classes,
            labels=labels,
            image_score=image_score,
            alarm=bool(image_score >= threshold),
            threshold=threshold,
            tiles=tiles,
        )

    def _infer(
        self, batch: np.ndarray, infos: list[LetterboxInfo], threshold: float
    ) -> list[Prediction]:
        n = self.spec.scan_views
        if self.graph_views > 1:
            if n != self.graph_views:
                raise ValueError(
                    f"{self.path}: the graph runs {self.graph_views} views; its spec cannot "
                    f"ask for {n} (export the checkpoint again with scan_views {n})"
                )
            outputs = self.run(batch)
            preds = self._decode(outputs, infos, threshold)
            views = outputs[VIEW_SCORES]
            for p, score, vs in zip(
                preds, scan_scores_from_views(views, self.spec.score_threshold), views, strict=True
            ):
                p.image_score = float(score)
                p.alarm = bool(p.image_score >= threshold)
                p.extra["view_scores"] = [float(v) for v in vs]
            return preds
        if n == 1:
            return super()._infer(batch, infos, threshold)
        b, (h, w) = len(batch), batch.shape[-2:]
        outputs = self.run(np.concatenate([scan_view(batch, k) for k in range(n)]))
        view_scores = np.zeros((b, n), np.float32)
        preds: list[Prediction] = []
        for k in range(n):
            part = {name: v[k * b : (k + 1) * b] for name, v in outputs.items()}
            part["boxes"] = boxes_from_view(part["boxes"], k, h, w)
            decoded = self._decode(part, infos, threshold)
            view_scores[:, k] = [p.image_score for p in decoded]
            if k == 0:
                preds = decoded
        for p, scores in zip(preds, view_scores, strict=True):
            p.image_score = float(scores.mean())
            p.alarm = bool(p.image_score >= threshold)
            p.extra["view_scores"] = [float(v) for v in scores]
        return preds

    def _decode(
        self, outputs: dict[str, np.ndarray], infos: list[LetterboxInfo], threshold: float
    ) -> list[Prediction]:
        preds = []
        for b, info in enumerate(infos):
            n = int(outputs["num_dets"][b])
            scores = outputs["scores"][b, :n].astype(np.float32)
            keep = scores >= self.spec.score_threshold
            boxes = info.boxes_to_original(outputs["boxes"][b, :n][keep])
            scores = scores[keep]
            classes = outputs["classes"][b, :n][keep].astype(np.int64)
            # Boxes entirely in the letterbox padding collapse to nothing once clipped.
            real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, classes = boxes[real], scores[real], classes[real]
            order = np.argsort(-scores, kind="stable")
            preds.append(self._make(boxes[order], scores[order], classes[order], threshold))
        return preds

    def _predict_tiled(self, image: np.ndarray, threshold: float) -> Prediction:
        tiles = self._tiles(image)
        per_tile = self._run_tiles(image, tiles, threshold)
        boxes, scores, classes, ids = [], [], [], []
        for i, (t, p) in enumerate(zip(tiles, per_tile, strict=True)):
            boxes.append(p.boxes + np.array([t.x0, t.y0, t.x0, t.y0], np.float32))
            scores.append(p.scores)
            classes.append(p.classes)
            ids.append(np.full(len(p.scores), i, np.int64))
        if not tiles:
            return self._make(*empty_detections(), threshold, tiles=0)
        b, s, c = merge_tile_detections(
            np.concatenate(boxes),
            np.concatenate(scores),
            np.concatenate(classes),
            np.concatenate(ids),
            tiles,
            image.shape[:2],
            iou=self.spec.nms_iou,
            max_detections=self.spec.max_detections,
        )
        return self._make(b, s, c, threshold, tiles=len(tiles))
