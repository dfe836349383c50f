"""``report.html``: a self-contained page a person reads (inline CSS, SVG, base64 thumbnails).

Built from ``results.jsonl`` on disk in streaming passes with bounded state (counters, a
fixed histogram, a top-K heap, a fixed-size seeded latency reservoir), so it costs the same
memory for a thousand scans as for a million. Only the top-K alarmed scans are read again,
for their thumbnails.
"""

from __future__ import annotations

import heapq
import html
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xscan.imageio import read_image, read_raw_pair
from xscan.score.overlay import jpeg_base64, render_result
from xscan.score.store import RUN_META, iter_results

log = logging.getLogger(__name__)

HIST_BINS = 20
RESERVOIR = 10_000
MAX_FAILURES_LISTED = 50


@dataclass
class RunSummary:
    """What the report shows, gathered from results.jsonl."""

    total: int = 0
    scored: int = 0
    failed: int = 0
    alarms: int = 0
    detections: int = 0
    failure_reasons: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    class_detections: Counter = field(default_factory=Counter)
    class_images: Counter = field(default_factory=Counter)
    score_min: float = float("inf")
    score_max: float = float("-inf")
    threshold: float | None = None
    hist: list[int] = field(default_factory=list)
    hist_range: tuple[float, float] = (0.0, 1.0)
    top: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def alarm_rate(self) -> float:
        return self.alarms / self.scored if self.scored else 0.0


def summarize(run_dir: str | Path, top_k: int = 12, seed: int = 0) -> RunSummary:
    """Two streaming passes over results.jsonl (ranges, then histogram) with bounded state."""
    s = RunSummary()
    heap: list[tuple[float, int, dict[str, Any]]] = []
    rng = random.Random(seed)
    lat: dict[str, list[float]] = {"decode_ms": [], "infer_ms": [], "total_ms": []}
    for rec in iter_results(run_dir):
        s.total += 1
        if rec["status"] != "ok":
            s.failed += 1
            err = rec.get("error") or {}
            s.failure_reasons[err.get("reason", "error")] += 1
            if len(s.failures) < MAX_FAILURES_LISTED:
                s.failures.append({"path": rec["path"], **err})
            continue
        s.scored += 1
        s.alarms += bool(rec["alarm"])
        score = float(rec["image_score"])
        s.score_min, s.score_max = min(s.score_min, score), max(s.score_max, score)
        s.threshold = rec.get("threshold", s.threshold)
        s.detections += len(rec["detections"])
        for d in rec["detections"]:
            s.class_detections[d["class"]] += 1
        for c in {d["class"] for d in rec["detections"]}:
            s.class_images[c] += 1
        # Alarms first, then by score; ties by index so the choice is stable.
        key = (int(bool(rec["alarm"])), score, -rec["index"])
        item = (key, rec["index"], rec)
        if len(heap) < top_k:
            heapq.heappush(heap, item)
        elif key > heap[0][0]:
            heapq.heapreplace(heap, item)
        t = rec.get("timings_ms") or {}
        sample = {
            "decode_ms": t.get("read_ms", 0) + t.get("decode_ms", 0) + t.get("preprocess_ms", 0),
            "infer_ms": t.get("infer_ms", 0),
        }
        sample["total_ms"] = sample["decode_ms"] + sample["infer_ms"]
        for k, v in sample.items():
            _reservoir_add(lat[k], v, s.scored, rng)
    s.top = [r for _, _, r in sorted(heap, reverse=True)]
    s.latency = {k: _percentiles(v) for k, v in lat.items()}
    _histogram(run_dir, s)
    return s


def _reservoir_add(buf: list[float], v: float, n_seen: int, rng: random.Random) -> None:
    if len(buf) < RESERVOIR:
        buf.append(v)
    else:
        j = rng.randrange(n_seen)
        if j < RESERVOIR:
            buf[j] = v


def _percentiles(v: list[float]) -> dict[str, float]:
    if not v:
        return {}
    a = np.asarray(v, np.float64)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max())}  # fmt: skip


def _histogram(run_dir: str | Path, s: RunSummary) -> None:
    lo = min(0.0, s.score_min) if s.scored else 0.0
    hi = max(1.0, s.score_max) if s.scored else 1.0
    s.hist_range = (lo, hi)
    s.hist = [0] * HIST_BINS
    if not s.scored:
        return
    for rec in iter_results(run_dir):
        if rec["status"] == "ok":
            b = int((float(rec["image_score"]) - lo) / (hi - lo) * HIST_BINS)
            s.hist[min(max(b, 0), HIST_BINS - 1)] += 1


def throughput(run_dir: str | Path) -> dict[str, float]:
    """Images/s over the completed sessions recorded in run.json."""
    meta_path = Path(run_dir) / RUN_META
    if not meta_path.exists():
        return {}
    sessions = json.loads(meta_path.read_text(encoding="utf-8")).get("sessions", [])
    n = sum(x.get("written", 0) for x in sessions)
    wall = sum(x.get("wall_s", 0.0) for x in sessions)
    out = {"sessions": len(sessions), "written": n, "wall_s": wall}
    if wall > 0:
        out["images_per_s"] = n / wall
    return out


# ------------------------------------------------------------------------------ rendering
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;
background:#f6f7f9}h1{margin:0 0 4px;font-size:24px}h2{font-size:18px;margin:28px 0 10px}
.sub{color:#5b6475;font-size:13px}.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px 16px;min-width:130px}
.card .v{font-size:24px;font-weight:600}
.card .k{font-size:12px;color:#5b6475;text-transform:uppercase}
.alarm .v{color:#c0392b}table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{border:1px solid #dde1e8;padding:4px 10px;text-align:left}th{background:#eef0f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bar{background:#3d7dd8;height:10px;
border-radius:2px}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));
gap:12px}.tile{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:8px}
.tile img{width:100%;height:auto;display:block;border-radius:4px;background:#eee}
.tile .cap{font-size:12px;margin-top:6px;word-break:break-all}.tag{display:inline-block;
padding:1px 6px;border-radius:4px;font-size:11px;color:#fff;background:#c0392b}
.tag.ok{background:#7f8c8d}.mono{font-family:ui-monospace,Menlo,monospace;font-size:12px}
"""


def _card(k: str, v: str, cls: str = "") -> str:
    return f'<div class="card {cls}"><div class="v">{v}</div><div class="k">{k}</div></div>'


def _svg_histogram(s: RunSummary, width: int = 640, height: int = 200) -> str:
    if not s.scored:
        return "<p>No scored images.</p>"
    pad_l, pad_b, pad_t = 40, 30, 10
    pw, ph = width - pad_l - 30, height - pad_b - pad_t
    top = max(s.hist) or 1
    lo, hi = s.hist_range
    bw = pw / len(s.hist)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'role="img" aria-label="histogram of image scores">']  # fmt: skip
    parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>')
    for i, c in enumerate(s.hist):
        bh = ph * c / top
        x, y = pad_l + i * bw, pad_t + ph - bh
        edge = lo + (hi - lo) * i / len(s.hist)
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" '
            f'fill="#3d7dd8"><title>{edge:.2f}: {c}</title></rect>'
        )
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = pad_l + pw * frac
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="11" text-anchor="middle">'
                     f"{lo + (hi - lo) * frac:.2f}</text>")  # fmt: skip
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + 10}" font-size="11" text-anchor="end">{top}'
                 f'</text><text x="{pad_l - 6}" y="{pad_t + ph}" font-size="11" '
                 'text-anchor="end">0</text>')  # fmt: skip
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + ph}" x2="{pad_l + pw}" y2="{pad_t + ph}" '
                 'stroke="#888"/>')  # fmt: skip
    if s.threshold is not None and lo <= s.threshold <= hi:
        x = pad_l + pw * (s.threshold - lo) / (hi - lo)
        parts.append(f'<line x1="{x:.1f}" y1="{pad_t}" x2="{x:.1f}" y2="{pad_t + ph}" '
                     'stroke="#c0392b" stroke-width="2" stroke-dasharray="4 3"/>'
                     f'<text x="{x + 4:.1f}" y="{pad_t + 12}" font-size="11" fill="#c0392b">'
                     f"threshold {s.threshold:.2f}</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _thumb(rec: dict[str, Any], model: Any) -> str:
    """Base64 thumbnail of a scored input with its result drawn ('' if it cannot be read)."""
    try:
        if rec.get("kind") == "raw_pair":
            image = read_raw_pair(*rec["files"])
        else:
            image = read_image(rec["path"])
        amap = None
        if model is not None and model.spec.task == "anomaly":
            amap = model.predict_batch([image])[0].anomaly_map
        return jpeg_base64(render_result(image, rec, amap, max_side=360))
    except Exception as e:  # noqa: BLE001 - a moved file must not break the report
        log.warning("report: no thumbnail for %s (%s)", rec["path"], e)
        return ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
    body = "".join("<tr>" + "".join(rows_i) + "</tr>" for rows_i in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def render_html(s: RunSummary, info: dict[str, Any], tp: dict[str, float], model: Any) -> str:
    e = html.escape
    cards = [
        _card("inputs", f"{s.total:,}"),
        _card("scored", f"{s.scored:,}"),
        _card("failed", f"{s.failed:,}"),
        _card("alarms", f"{s.alarms:,}", "alarm"),
        _card("alarm rate", f"{100 * s.alarm_rate:.1f}%", "alarm"),
        _card("detections", f"{s.detections:,}"),
    ]
    if tp.get("images_per_s"):
        cards.append(_card("images/s", f"{tp['images_per_s']:.1f}"))
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>xscan report: {e(str(info.get('run_dir', '')))}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>Scoring report</h1><div class='sub'>{e(str(info.get('run_dir', '')))} · model "
           f"<b>{e(str(info.get('model_name', '?')))}</b> ({e(str(info.get('task', '?')))}, "
           f"sha256 <span class='mono'>{e(str(info.get('model_sha256', ''))[:12])}</span>) · "
           f"threshold {s.threshold if s.threshold is not None else '–'} · generated "
           f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</div>",
           f"<div class='cards'>{''.join(cards)}</div>"]  # fmt: skip
    out.append("<h2>Image scores</h2>" + _svg_histogram(s))
    if s.class_detections:
        top = max(s.class_detections.values())
        rows = [
            [f"<td>{e(c)}</td>", f"<td class='n'>{n:,}</td>",
             f"<td class='n'>{s.class_images[c]:,}</td>",
             f"<td style='width:240px'><div class='bar' style='width:{100 * n / top:.0f}%'>"
             "</div></td>"]
            for c, n in s.class_detections.most_common()
        ]  # fmt: skip
        out.append(
            "<h2>Detections per class</h2>" + _table(["class", "detections", "images", ""], rows)
        )
    title = "Top alarms" if s.alarms else "Highest scores (no alarms)"
    tiles = []
    for rec in s.top:
        src = _thumb(rec, model)
        img = (
            f"<img src='{src}' alt='{e(rec['path'])}'>" if src else "<div>(image unavailable)</div>"
        )
        tag = (
            "<span class='tag'>ALARM</span>"
            if rec["alarm"]
            else "<span class='tag ok'>clear</span>"
        )
        dets = ", ".join(f"{d['class']} {d['score']:.2f}" for d in rec["detections"][:5])
        tiles.append(f"<div class='tile'>{img}<div class='cap'>{tag} score "
                     f"<b>{rec['image_score']:.3f}</b>{' · ' + e(dets) if dets else ''}<br>"
                     f"<span class='mono'>{e(rec['path'])}</span></div></div>")  # fmt: skip
    out.append(f"<h2>{title}</h2><div class='grid'>{''.join(tiles)}</div>")
    out.append("<h2>Failures</h2>")
    if s.failed:
        reasons = ", ".join(f"{r}: {n}" for r, n in s.failure_reasons.most_common())
        rows = [[f"<td class='mono'>{e(f['path'])}</td>", f"<td>{e(f.get('reason', ''))}</td>",
                 f"<td>{e(f.get('message', ''))}</td>"] for f in s.failures]  # fmt: skip
        n_more = s.failed - len(s.failures)
        more = f"<p>…and {n_more} more (see summary.csv).</p>" if n_more > 0 else ""
        out.append(f"<p>{s.failed} input(s) could not be scored ({e(reasons)}).</p>"
                   + _table(["path", "reason", "message"], rows) + more)  # fmt: skip
    else:
        out.append("<p>None: every input was scored.</p>")
    out.append("<h2>Latency and throughput</h2>")
    rows = []
    for k, label in (("decode_ms", "read + decode + preprocess (worker threads)"),
                     ("infer_ms", "inference (per image, batched)"),
                     ("total_ms", "sum of stages")):  # fmt: skip
        v = s.latency.get(k) or {}
        rows.append([f"<td>{label}</td>"] + [f"<td class='n'>{v.get(q, 0):.1f}</td>"
                                              for q in ("mean", "p50", "p95", "max")])  # fmt: skip
    out.append(_table(["stage (ms per image)", "mean", "p50", "p95", "max"], rows))
    if tp:
        out.append(f"<p>{tp.get('written', 0):,} images written in {tp.get('wall_s', 0):.1f} s "
                   f"over {tp.get('sessions', 0)} completed session(s): "
                   f"<b>{tp.get('images_per_s', 0):.1f} images/s</b> end to end. Decoding "
                   "runs in worker threads alongside inference, so the stage times overlap."
                   "</p>")  # fmt: skip
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    run_dir: str | Path, info: dict[str, Any], model: Any = None, top_k: int = 12
) -> tuple[Path, RunSummary]:
    """Build ``RUN_DIR/report.html`` from ``results.jsonl``; returns its path and the numbers."""
    run_dir = Path(run_dir)
    s = summarize(run_dir, top_k=top_k)
    page = render_html(s, {"run_dir": str(run_dir), **info}, throughput(run_dir), model)
    out = run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out, s
