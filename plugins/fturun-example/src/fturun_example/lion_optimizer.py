"""The Lion optimizer (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
arXiv:2302.06675) in pure torch. This module imports torch: fturun_example imports it only inside
the ``lion`` factory."""

from __future__ import annotations

import torch


class Lion(torch.optim.Optimizer):
    """EvoLved Sign Momentum. Per parameter, with gradient ``g`` and momentum ``m``::

        p <- p * (1 - lr * weight_decay)                      # decoupled weight decay
        p <- p - lr * sign(beta1 * m + (1 - beta1) * g)       # the update has norm 1 per entry
        m <- beta2 * m + (1 - beta2) * g

    One state tensor per parameter (AdamW keeps two). Use a learning rate 3-10x smaller than
    AdamW's and a weight decay 3-10x larger, so that ``lr * weight_decay`` stays similar.

    ``override_group_weight_decay=True`` makes ``weight_decay`` replace the weight decay of every
    param group that has a non-zero one: the Hugging Face Trainer builds two groups (weights with
    ``training.weight_decay``, biases and norms with 0) whose values would otherwise win.
    """

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0,
                 *, override_group_weight_decay: bool = False):
        if not lr > 0:
            raise ValueError(f"Lion: invalid learning rate {lr} (must be > 0)")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lion: invalid betas {betas} (two values in [0, 1))")
        if weight_decay < 0:
            raise ValueError(f"Lion: invalid weight_decay {weight_decay} (must be >= 0)")
        if override_group_weight_decay:
            params = list(params)
            params = [dict(group, weight_decay=weight_decay)
                      if isinstance(group, dict) and group.get("weight_decay") else group
                      for group in params]
        defaults = {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            weight_decay = group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg = state["exp_avg"]
                if weight_decay:
                    p.mul_(1 - lr * weight_decay)
                update = exp_avg.lerp(grad, 1 - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.lerp_(grad, 1 - beta2)
        return loss
