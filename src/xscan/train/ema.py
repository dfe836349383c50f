"""Exponential moving average of model weights (evaluated and exported instead of the raw
weights: it is smoother and usually better)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """``ema = d * ema + (1 - d) * weights`` after each optimiser step, with the decay ramped
    up as ``d = decay * (1 - exp(-updates / tau))`` so early, poor weights fade quickly.
    Buffers (BatchNorm statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float = 0.999, tau: float = 500.0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        src = model.state_dict()
        for name, v in self.module.state_dict().items():
            s = src[name].detach()
            if v.dtype.is_floating_point:
                v.mul_(d).add_(s.to(v.dtype), alpha=1 - d)
            else:
                v.copy_(s)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
