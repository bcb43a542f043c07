"""PlainSGD: an optimizer class the Trainer builds as ``cls(param_groups, **kwargs)``."""

from __future__ import annotations

import torch


class PlainSGD(torch.optim.Optimizer):
    """``p -= lr * (grad + weight_decay * p)``; each group's weight_decay comes from the
    Trainer's parameter groups, the lr from the kwargs (then the scheduler)."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad + group["weight_decay"] * p, alpha=-group["lr"])
        return loss
