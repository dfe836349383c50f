"""``xscan data check``: every problem in a dataset, as a report a person can act on.

Reads the dataset with full image decoding (truncated/corrupt files are found), then adds
collection-level checks the readers cannot make one file at a time: the same image listed
twice, and boxes that are tiny or nearly cover the scan.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from xscan.data.records import ERROR, WARNING, DatasetCollection, Problem

TINY_BOX_PX = 2.0


def collection_problems(col: DatasetCollection) -> list[Problem]:
    out: list[Problem] = []
    seen: dict[str, list[str]] = defaultdict(list)
    for r in col.records:
        if r.image:
            seen[str(Path(r.image).resolve())].append(r.key)
    for path, keys in seen.items():
        if len(keys) > 1:
            out.append(
                Problem(path, 0, f"image listed {len(keys)} times ({', '.join(keys[:4])})", ERROR)
            )
    for r in col.records:
        for o in r.objects:
            x1, y1, x2, y2 = o.box
            if min(x2 - x1, y2 - y1) < TINY_BOX_PX:
                out.append(
                    Problem(
                        r.image or r.key,
                        0,
                        f"{o.label} box {list(o.box)} is under {TINY_BOX_PX:g} px on a side",
                        WARNING,
                    )
                )
            if (x2 - x1) * (y2 - y1) > 0.98 * r.width * r.height:
                out.append(
                    Problem(r.image or r.key, 0, f"{o.label} box covers the whole scan", WARNING)
                )
    return out


def check_collection(col: DatasetCollection) -> dict[str, Any]:
    problems = list(col.problems) + collection_problems(col)
    errors = [p for p in problems if p.severity == ERROR]
    return {
        "problems": problems,
        "errors": len(errors),
        "warnings": len(problems) - len(errors),
        "summary": col.summary_line(),
    }


def format_report(result: dict[str, Any], limit: int | None = None) -> str:
    probs = sorted(result["problems"], key=lambda p: (p.severity != ERROR, p.file, p.line))
    shown = probs if limit is None else probs[:limit]
    lines = [str(p) for p in shown]
    if len(shown) < len(probs):
        lines.append(f"... {len(probs) - len(shown)} more (see --report)")
    lines.append(f"{result['errors']} errors, {result['warnings']} warnings; {result['summary']}")
    return "\n".join(lines)
