from __future__ import annotations

import cv2
import numpy as np

from xscan.anomaly.sources import dataset_refs


def test_labels_csv_split_is_reproducible_and_keeps_threats_out_of_training(tmp_path):
    rows = ["image,is_threat"]
    for i in range(20):
        label = int(i >= 15)
        name = f"img/{'P' if label else 'N'}{i:03d}.png"
        (tmp_path / "img").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.full((8, 12, 3), 10 * i, np.uint8))
        rows.append(f"{name},{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    parts = {p: dataset_refs(tmp_path, None, p, "false_color") for p in ("train", "calib", "test")}
    names = {p: [r.name for r in refs] for p, refs in parts.items()}
    assert [len(v) for v in names.values()] == [9, 3, 3 + 5]  # 15 benign split 60/20/20
    assert all(r.label == 0 for r in parts["train"] + parts["calib"])
    assert sum(r.label for r in parts["test"]) == 5
    tr, ca, te = (set(names[p]) for p in ("train", "calib", "test"))
    assert not (tr & ca or tr & te or ca & te) and len(tr | ca | te) == 20
    assert names == {
        p: [r.name for r in dataset_refs(tmp_path, None, p, "false_color")] for p in names
    }
    scan = parts["test"][-1].load()
    assert scan.image.shape == (8, 12, 3) and scan.label == 1
