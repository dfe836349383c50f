"""Dataset readers into one record type, the class taxonomy, writers, ``xscan data``, torch
datasets and X-ray-aware augmentation.

Reading needs only numpy, OpenCV and PyYAML; the torch side lives in ``torch_dataset``,
``augment``, ``tip`` and ``mixture``.
"""

from __future__ import annotations

from xscan.data.records import DatasetCollection, ObjectRecord, Problem, ScanRecord
from xscan.data.registry import KINDS, detect_format, load_dataset, load_many

__all__ = [
    "KINDS",
    "DatasetCollection",
    "ObjectRecord",
    "Problem",
    "ScanRecord",
    "detect_format",
    "load_dataset",
    "load_many",
]
