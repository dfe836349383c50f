"""Parity gates: the exported graph must compute what the PyTorch module computes.

Two comparisons on the same batch of generated scans, preprocessed by
:func:`xscan.preprocess.prepare` exactly as the runtime does:

* raw outputs, element-wise ``|ort - torch| <= atol + rtol * |torch|`` (rtol 1e-3, atol 1e-4).
  For a detector the top-K rows are paired by (class, score within tolerance, nearest box)
  rather than by index, since the order of (near-)equal scores is arbitrary; rows below
  ``min_score`` (padding) and rows tied with the K-th score (which may fall either side of
  the top-K cut) are left out, and rows below ``spec.score_threshold`` may lack a
  counterpart (a peak on a flat heatmap can flip with float rounding; such rows are never
  reported) but must agree when they pair.
* final detections: for every image, the detections with score >= ``spec.score_threshold``
  must pair up one-to-one (same class, box within ``box_atol`` pixels, score within
  ``score_atol``); a detection whose score is within ``score_atol`` of the threshold may be
  present on one side only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xscan.preprocess import prepare
from xscan.spec import VIEW_SCORES, ModelSpec


class ParityError(RuntimeError):
    """The exported model disagrees with the PyTorch model beyond tolerance."""


@dataclass
class ParityReport:
    n_images: int
    max_abs_error: dict[str, float] = field(default_factory=dict)
    max_violation: float = 0.0  # max of |a - b| - (atol + rtol |b|), <= 0 when within tolerance
    detections_torch: int = 0
    detections_onnx: int = 0
    unmatched: int = 0
    max_box_error: float = 0.0
    max_score_error: float = 0.0
    rtol: float = 1e-3
    atol: float = 1e-4
    ok: bool = True
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        errs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_error.items())
        return (
            f"{self.n_images} scans; max abs error {errs}; detections torch "
            f"{self.detections_torch} / onnx {self.detections_onnx}, unmatched {self.unmatched}, "
            f"max box error {self.max_box_error:.2e} px, max score error {self.max_score_error:.2e}"
        )


def synthetic_scans(spec: ModelSpec, n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """``n`` seeded scans in the spec's modality, of varied sizes around the input size.

    Generated threat-carrying baggage scans (:func:`xscan.synth.generator.generate_scan`)
    when the generator is available; otherwise drawn bright bags with dark, dense objects.
    """
    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    sizes = [(int(h * rng.uniform(0.8, 1.5)), int(w * rng.uniform(0.8, 1.5))) for _ in range(n)]
    try:
        from xscan.synth.generator import SynthOptions, generate_scan

        opts = SynthOptions(with_threat=True)
        return [
            scan_in_modality(generate_scan("baggage", hw, seed + i, opts), spec.modality)
            for i, hw in enumerate(sizes)
        ]
    except ImportError:
        return [_drawn_scan(spec, hw, rng) for hw in sizes]


def scan_in_modality(scan, modality: str) -> np.ndarray:
    """A generated :class:`~xscan.synth.generator.Scan` as the runtime would read it from
    disk: false colour ``(H, W, 3) uint8``, gray ``(H, W) uint16`` (high-energy
    transmission), raw dual ``(H, W, 2) float32``."""
    if modality == "raw_dual":
        return np.stack([scan.t_low, scan.t_high], axis=-1).astype(np.float32)
    if modality == "gray":
        return np.clip(np.rint(scan.t_high * 65535.0), 0, 65535).astype(np.uint16)
    return np.asarray(scan.rgb, np.uint8)


def _drawn_scan(spec: ModelSpec, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    hh, ww = size_hw
    img = np.full((hh, ww, 3), 0.92, np.float32) + rng.normal(0, 0.02, (hh, ww, 3))
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = int(rng.integers(0, ww - 8)), int(rng.integers(0, hh - 8))
        bw, bh = int(rng.integers(6, max(7, ww // 3))), int(rng.integers(6, max(7, hh // 3)))
        img[y0 : y0 + bh, x0 : x0 + bw] *= rng.uniform(0.1, 0.7, 3)
    img = np.clip(img, 0.0, 1.0)
    if spec.modality == "raw_dual":
        return img.astype(np.float32)  # (H, W, 3) float: low, high, Z/100 taken as complete
    if spec.modality == "gray":
        return (img.mean(axis=2) * 65535).astype(np.uint16)
    return (img * 255).astype(np.uint8)


def prepared_batch(spec: ModelSpec, images: list[np.ndarray]) -> np.ndarray:
    """``(B, C, H, W) float32`` network inputs via the shared preprocessing."""
    return np.stack([prepare(im, spec)[0] for im in images])


def _tol(report: ParityReport, ref: np.ndarray) -> np.ndarray:
    return report.atol + report.rtol * np.abs(ref)


def _compare_dense(name: str, a: np.ndarray, b: np.ndarray, report: ParityReport) -> None:
    if a.shape != b.shape:
        report.problems.append(f"output {name}: shape {b.shape} != torch {a.shape}")
        return
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    err = np.abs(b64 - a64)
    report.max_abs_error[name] = float(err.max()) if err.size else 0.0
    if err.size:
        viol = float((err - _tol(report, a64)).max())
        report.max_violation = max(report.max_violation, viol)
        if viol > 0:
            report.problems.append(
                f"output {name}: max abs error {err.max():.3e} exceeds "
                f"rtol {report.rtol} / atol {report.atol}"
            )


def _match_rows(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], b: int, min_score: float, strict: float
):
    """Pair the candidate rows of image ``b``: for each torch row with score >= min_score, the
    unused onnx row of the same class whose score is within tolerance and whose box is
    closest. Top-K order among (near-)equal scores is arbitrary, hence matching, not indexing.

    Rows scoring >= ``strict`` (the reporting threshold) must pair. Below it a row may have no
    counterpart: on a flat heatmap a location equal to its neighbour within float rounding is
    a peak on one side only, and such rows are never reported. Yields ``(torch row, onnx row
    or None)``.
    """
    rs, gs = ref["scores"][b].astype(np.float64), got["scores"][b].astype(np.float64)
    rb, gb = ref["boxes"][b].astype(np.float64), got["boxes"][b].astype(np.float64)
    rc, gc = ref["classes"][b], got["classes"][b]
    used = np.zeros(len(gs), bool)
    last = min(rs[-1], gs[-1])
    for i in np.nonzero(rs >= min_score)[0]:
        tol = 2 * (1e-4 + 1e-3 * abs(rs[i]))
        # A row tied (within tolerance) with the K-th score may fall either side of top-K.
        optional = rs[i] < strict or rs[i] - last <= tol
        cand = np.nonzero(~used & (gc == rc[i]) & (np.abs(gs - rs[i]) <= tol))[0]
        if not len(cand):
            if not optional:
                yield i, None
            continue
        err = np.abs(gb[cand] - rb[i]).max(axis=1)
        j = cand[int(np.argmin(err))]
        if optional and err.min() > 1e-4 + 1e-3 * np.abs(rb[i]).max():
            continue
        used[j] = True
        yield i, j


def compare_raw(
    spec: ModelSpec,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    report: ParityReport,
    min_score: float = 1e-3,
) -> None:
    """Element-wise comparison of every output (see the module docstring)."""
    if spec.task != "detect":
        for name, a in ref.items():
            _compare_dense(name, a, got[name], report)
        return
    if VIEW_SCORES in ref:  # views in the graph (spec.scan_views > 1): dense (B, V)
        _compare_dense(VIEW_SCORES, ref[VIEW_SCORES], got[VIEW_SCORES], report)
    for name in ("boxes", "scores", "classes"):
        if ref[name].shape != got[name].shape:
            report.problems.append(f"output {name}: shape {got[name].shape} != {ref[name].shape}")
            return
    pairs_ref: dict[str, list] = {"boxes": [], "scores": [], "classes": []}
    pairs_got: dict[str, list] = {"boxes": [], "scores": [], "classes": []}
    missing = 0
    for b in range(len(ref["scores"])):
        for i, j in _match_rows(ref, got, b, min_score, spec.score_threshold):
            if j is None:
                missing += 1
                continue
            for name in pairs_ref:
                pairs_ref[name].append(ref[name][b, i])
                pairs_got[name].append(got[name][b, j])
    if missing:
        report.problems.append(
            f"{missing} candidate row(s) of torch have no onnx row with the same class and score"
        )
    for name in pairs_ref:
        if not pairs_ref[name]:
            report.max_abs_error[name] = 0.0
            continue
        _compare_dense(name, np.asarray(pairs_ref[name]), np.asarray(pairs_got[name]), report)


def _final(spec: ModelSpec, outs: dict[str, np.ndarray], b: int):
    n = int(outs["num_dets"][b])
    s = outs["scores"][b, :n]
    keep = s >= spec.score_threshold
    return outs["boxes"][b, :n][keep], s[keep], outs["classes"][b, :n][keep]


def compare_detections(
    spec: ModelSpec,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    report: ParityReport,
    box_atol: float = 0.05,
    score_atol: float = 1e-3,
) -> None:
    """One-to-one matching of final detections per image (see the module docstring)."""
    thr = spec.score_threshold
    for b in range(len(ref["num_dets"])):
        rb, rs, rc = _final(spec, ref, b)
        gb, gs, gc = _final(spec, got, b)
        report.detections_torch += len(rs)
        report.detections_onnx += len(gs)
        used = np.zeros(len(gs), bool)
        for box, score, cls in zip(rb, rs, rc, strict=True):
            cand = np.nonzero(~used & (gc == cls))[0]
            if len(cand):
                d = np.abs(gb[cand] - box).max(axis=1)
                j = cand[int(np.argmin(d))]
                if d.min() <= box_atol * 20:  # paired; the size of the error is judged below
                    used[j] = True
                    report.max_box_error = max(report.max_box_error, float(d.min()))
                    report.max_score_error = max(report.max_score_error, float(abs(gs[j] - score)))
                    continue
            if abs(score - thr) > score_atol:
                report.unmatched += 1
        report.unmatched += int(sum(abs(gs[~used] - thr) > score_atol))
    if report.unmatched:
        report.problems.append(f"{report.unmatched} detection(s) without a counterpart")
    if report.max_box_error > box_atol:
        report.problems.append(
            f"final boxes differ by up to {report.max_box_error:.3e} px (> {box_atol})"
        )
    if report.max_score_error > score_atol:
        report.problems.append(
            f"final scores differ by up to {report.max_score_error:.3e} (> {score_atol})"
        )


def check_parity(
    spec: ModelSpec,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    rtol: float = 1e-3,
    atol: float = 1e-4,
    box_atol: float = 0.05,
    score_atol: float = 1e-3,
) -> ParityReport:
    """Compare torch outputs ``ref`` with onnxruntime outputs ``got`` (same batch)."""
    report = ParityReport(n_images=len(next(iter(ref.values()))), rtol=rtol, atol=atol)
    compare_raw(spec, ref, got, report)
    if spec.task == "detect":
        compare_detections(spec, ref, got, report, box_atol, score_atol)
    report.ok = not report.problems
    return report


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def detection_agreement(
    spec: ModelSpec,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    iou: float = 0.9,
    score_atol: float = 0.02,
) -> tuple[float, int]:
    """For reduced precision (FP16): the fraction of reference detections (score >=
    ``spec.score_threshold``) that the other model reports too (same class, IoU >= ``iou``,
    score within ``score_atol``), counted both ways; and the number compared. Detections
    within ``score_atol`` of the threshold are not counted (they may fall either side)."""
    thr = spec.score_threshold
    agree = total = 0
    for a, b in ((ref, got), (got, ref)):
        for i in range(len(a["num_dets"])):
            ab, as_, ac = _final(spec, a, i)
            bb, bs, bc = _final(spec, b, i)
            for box, s, c in zip(ab, as_, ac, strict=True):
                if abs(s - thr) <= score_atol:
                    continue
                total += 1
                ok = (bc == c) & (np.abs(bs - s) <= score_atol)
                agree += bool(ok.any() and (_iou(box, bb[ok]) >= iou).any())
    return (agree / total if total else 1.0), total
