"""Bag-level (image-level) alarm metrics, the way a screening authority measures a system.

A scan *alarms* when its image score (for a detector: the highest detection score) is
``>= threshold``. The false-alarm rate (FAR) is the share of benign scans that alarm; the
detection rate the share of threat scans that alarm. Thresholds are calibrated on benign
scans only: the lowest threshold whose FAR on them does not exceed the target.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from xscan.spec import OperatingPoint


def _arrays(scores: Any, is_threat: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(is_threat).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.shape}) and labels ({y.shape}) differ in length")
    if not np.isfinite(s).all():
        raise ValueError("image scores contain NaN or infinity")
    return s, y


def roc_curve(scores: Any, is_threat: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, detection_rate, thresholds)``, one point per distinct score (descending), plus
    the origin ``(0, 0)`` at threshold ``+inf``."""
    s, y = _arrays(scores, is_threat)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.array([], int)
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    far = np.r_[0.0, fp / n_neg]
    dr = np.r_[0.0, tp / n_pos]
    return far, dr, np.r_[np.inf, s[distinct]]


def auroc(scores: Any, is_threat: Any) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); ``nan`` if a class is
    missing."""
    s, y = _arrays(scores, is_threat)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibrate_threshold(benign_scores: Any, target_far: float) -> float:
    """The lowest threshold at which at most ``target_far`` of ``benign_scores`` alarm
    (alarm: ``score >= threshold``)."""
    s = np.sort(np.asarray(benign_scores, np.float64).reshape(-1))[::-1]
    if s.size == 0:
        raise ValueError("threshold calibration needs at least one benign scan")
    if not 0.0 <= target_far <= 1.0:
        raise ValueError(f"target false-alarm rate must be in [0, 1], got {target_far}")
    allowed = int(np.floor(target_far * s.size + 1e-9))
    if allowed >= s.size:
        return float(s[-1])
    # Just above the (allowed+1)-th highest benign score, so that score does not alarm.
    return float(np.nextafter(s[allowed], np.inf))


def rates_at_threshold(scores: Any, is_threat: Any, threshold: float) -> dict[str, float]:
    s, y = _arrays(scores, is_threat)
    alarm = s >= threshold
    far = float(alarm[~y].mean()) if (~y).any() else float("nan")
    dr = float(alarm[y].mean()) if y.any() else float("nan")
    return {"threshold": float(threshold), "far": far, "detection_rate": dr}


def far_name(far: float) -> str:
    """``0.05 -> "far5"``, ``0.005 -> "far0.5"``."""
    pct = far * 100
    return f"far{pct:g}"


def alarm_metrics(
    scores: Any,
    is_threat: Any,
    far_targets: list[float] | tuple[float, ...] = (0.01, 0.05, 0.10),
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """AUROC and, per target FAR, the threshold calibrated on the benign scores here and the
    resulting FAR / detection rate. ``thresholds`` (name -> value, e.g. from a model's
    operating points) are also evaluated as given under ``"given"``."""
    s, y = _arrays(scores, is_threat)
    out: dict[str, Any] = {
        "n_scans": int(s.size),
        "n_threat": int(y.sum()),
        "n_benign": int((~y).sum()),
        "auroc": auroc(s, y),
        "at_far": {},
    }
    if (~y).any():
        for far in far_targets:
            r = rates_at_threshold(s, y, calibrate_threshold(s[~y], far))
            out["at_far"][far_name(far)] = {"target_far": float(far), **r}
    if thresholds:
        out["given"] = {n: rates_at_threshold(s, y, t) for n, t in thresholds.items()}
    return out


def operating_points(
    benign_scores: Any,
    far_targets: list[float] | tuple[float, ...],
    threat_scores: Any = None,
    source: str = "",
) -> list[OperatingPoint]:
    """Operating points ``far1``, ``far5``, ... calibrated on ``benign_scores``; the detection
    rate is filled in when ``threat_scores`` are given."""
    benign = np.asarray(benign_scores, np.float64).reshape(-1)
    threat = None if threat_scores is None else np.asarray(threat_scores, np.float64).reshape(-1)
    points = []
    for far in far_targets:
        t = calibrate_threshold(benign, far)
        dr = float((threat >= t).mean()) if threat is not None and threat.size else None
        points.append(
            OperatingPoint(
                name=far_name(far),
                threshold=t,
                target_far=float(far),
                far=float((benign >= t).mean()),
                detection_rate=dr,
                n_benign=int(benign.size),
                source=source,
            )
        )
    return points


def sliced_alarm_metrics(
    scores: Any,
    is_threat: Any,
    groups: dict[str, Any],
    far_targets: list[float] | tuple[float, ...] = (0.01, 0.05, 0.10),
) -> dict[str, dict[str, Any]]:
    """Detection rate per slice with thresholds calibrated on *all* benign scans.

    ``groups`` maps a slicing name (e.g. ``"occlusion_level"``) to one value per scan, or to
    one tuple of values per scan where a scan belongs to several slices (``"threat_class"``:
    a scan with a knife and a firearm counts in both); benign scans count in every slice's
    FAR (a threat-free scan has no occlusion level).
    Returns ``{slicing: {value: {"n_threat", "at_far": {name: detection_rate}}}}``.
    """
    s, y = _arrays(scores, is_threat)
    thresholds = (
        {far_name(f): calibrate_threshold(s[~y], f) for f in far_targets} if (~y).any() else {}
    )
    out: dict[str, dict[str, Any]] = {}
    for slicing, values in groups.items():
        if len(values) != s.size:
            raise ValueError(f"slicing {slicing!r}: {len(values)} values for {s.size} scans")
        members = [_members(v) for v in values]
        per: dict[str, Any] = {}
        for v in sorted({m for ms, t in zip(members, y, strict=True) if t for m in ms}):
            m = y & np.array([v in ms for ms in members])
            per[v] = {
                "n_threat": int(m.sum()),
                "at_far": {n: float((s[m] >= t).mean()) for n, t in thresholds.items()},
            }
        out[slicing] = per
    return out


def _members(value: Any) -> set[str]:
    """The slices one scan belongs to: none for ``None``, each item of a tuple/list/set."""
    if value is None:
        return set()
    if isinstance(value, (tuple, list, set, frozenset)):
        return {str(v) for v in value}
    return {str(value)}
