"""Folder scoring: streaming discovery, a threaded decode/infer/write pipeline, a resumable
exactly-once result store, JSONL/CSV/COCO writers, overlays and an HTML report.

Never imports torch. Entry point: :func:`xscan.score.run.score` (``xscan score``).
"""
