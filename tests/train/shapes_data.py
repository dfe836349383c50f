"""A tiny generated detection dataset for training tests: dark rectangles (class 0) and grey
squares (class 1) on a white background; every third image is benign. Deterministic."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from xscan.config import config_from_dict


class ShapesDataset(Dataset):
    def __init__(self, n: int, seed: int, size: int = 64, nan_at: int | None = None):
        self.n, self.seed, self.size, self.nan_at = n, seed, size, nan_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        s = self.size
        img = np.ones((3, s, s), np.float32)
        boxes, labels = [], []
        if i % 3:
            for _ in range(int(rng.integers(1, 3))):
                w, h = (int(v) for v in rng.integers(s // 5, s // 2, size=2))
                x, y = int(rng.integers(0, s - w)), int(rng.integers(0, s - h))
                label = int(rng.integers(0, 2))
                img[:, y : y + h, x : x + w] = 0.2 if label == 0 else 0.6
                boxes.append([x, y, x + w, y + h])
                labels.append(label)
        img += rng.normal(0, 0.02, img.shape).astype(np.float32)
        if self.nan_at is not None and i == self.nan_at:
            img[:] = np.nan
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": i,
            "is_threat": bool(labels),
            "letterbox": None,
        }
        return torch.from_numpy(img), target


def collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def tiny_config(out_dir: str, **train):
    train_cfg = {
        "epochs": 2,
        "batch_size": 8,
        "lr": 2e-3,
        "warmup_epochs": 0.5,
        "out_dir": out_dir,
        "device": "cpu",
        "log_every": 0,
        "ema_decay": 0.99,
        "extra": {"ema_tau": 5},
    }
    train_cfg.update(train)
    return config_from_dict(
        {
            "name": "tiny",
            "seed": 3,
            "model": {
                "task": "detect",
                "class_names": ["knife", "gun"],
                "input_size": [64, 64],
                "arch": "centernet",
                "arch_params": {
                    "backbone": "mobilenet_v3_small",
                    "fpn_channels": 16,
                    "head_channels": 16,
                    "head_depth": 1,
                },
                "max_detections": 20,
            },
            "data": {"num_workers": 0},
            "train": train_cfg,
        }
    )
