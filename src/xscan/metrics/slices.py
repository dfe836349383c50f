"""Per-scan slices of an evaluation, and COCO metrics over the threats that show.

Generated scans annotate every object with a ``conspicuity`` (its own attenuation over the
spread of the clutter it lies in, :mod:`xscan.synth.scene`). These helpers turn records into
the per-scan keys that bag-level metrics are sliced by, and score boxes with the objects
fainter than :data:`MIN_CONSPICUITY` ignored. Used by ``xscan eval`` and by the validation and
test passes of ``xscan train``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xscan.metrics.detection import coco_metrics

# Objects whose own attenuation is below the spread of the clutter they lie in (annotated by
# the synthetic generator as ``conspicuity``) are ignored in the "threats that show" AP.
MIN_CONSPICUITY = 1.0


def scan_slices(records, class_names) -> list[dict[str, Any]]:
    """Per scan: its first subset, the highest occlusion level of its model-class objects, the
    model classes it holds (boxed objects and image-level labels alike), the box and
    conspicuity of each model-class object that has one, and ``visibility``: ``"shows"`` when
    its most conspicuous threat reaches :data:`MIN_CONSPICUITY`, else ``"faint"`` (``None``
    without conspicuities)."""
    names = set(class_names)
    out = []
    for r in records:
        levels = [
            o.occlusion_level
            for o in r.objects
            if o.occlusion_level is not None and o.label in names
        ]
        held = {o.label for o in r.objects if o.label in names}
        held |= {k for k, v in r.image_labels.items() if v == 1 and k in names}
        known = [
            (o.box, float(o.attrs["conspicuity"]))
            for o in r.objects
            if o.label in names and "conspicuity" in o.attrs
        ]
        most = max((c for _, c in known), default=None)
        out.append(
            {
                "subset": r.subsets[0] if r.subsets else None,
                "occlusion_level": max(levels) if levels else None,
                "threat_class": tuple(c for c in class_names if c in held),
                "conspicuity": known,
                "visibility": (
                    None if most is None else "shows" if most >= MIN_CONSPICUITY else "faint"
                ),
            }
        )
    return out


def conspicuous_coco(
    gts: list[dict[str, Any]],
    preds: list[dict[str, Any]],
    class_names,
    min_conspicuity: float = MIN_CONSPICUITY,
) -> dict[str, Any] | None:
    """COCO metrics over the threats that show: objects with ``conspicuity`` below
    ``min_conspicuity`` become ignore regions (COCO ``iscrowd``: a detection on one counts
    neither as a hit nor as a false alarm). ``gts`` carry ``conspicuity`` (``[(box xyxy,
    value)]`` per scan, from :func:`scan_slices`), matched to their boxes by position. ``None``
    when no object has a conspicuity."""
    boxed = [i for i, g in enumerate(gts) if g.get("has_boxes", True)]
    if not any(gts[i].get("conspicuity") for i in boxed):
        return None
    flagged, n_ignored = [], 0
    for i in boxed:
        g = gts[i]
        known = g.get("conspicuity") or []
        crowd = np.zeros(len(g["labels"]), int)
        for j, box in enumerate(np.asarray(g["boxes"], np.float64).reshape(-1, 4) if known else []):
            diffs = [np.abs(np.asarray(b, np.float64) - box).max() for b, _ in known]
            k = int(np.argmin(diffs))
            # the same object: records and ground truth share the original image frame
            if diffs[k] <= 1.0 and known[k][1] < min_conspicuity:
                crowd[j] = 1
        n_ignored += int(crowd.sum())
        flagged.append({**g, "iscrowd": crowd})
    result = coco_metrics(flagged, [preds[i] for i in boxed], class_names)
    result.pop("pr50", None)
    result.update(min_conspicuity=min_conspicuity, n_ignored=n_ignored)
    return result
