"""bf16 training with fp32 master weights kept by the optimizer.

``Trainer(bf16=True)`` autocasts over fp32 weights: every matmul casts its fp32 weight to
bf16 on the way in, and the backward pass casts the gradients back, so on a CPU a step of
SmolLM2-135M spent more time in those copies than in the matmuls. Here the model's
parameters *are* bf16 (forward and backward run in bf16 with no casts) and
:class:`MasterWeightAdamW` keeps an fp32 copy of each, which AdamW updates (torch's fused
AdamW) from the bf16 gradients; the bf16 parameters are the master weights rounded after
every step. Updates smaller than bf16's resolution accumulate in the fp32 copy instead of
being lost, which pure bf16 AdamW would do at fine-tuning learning rates.

The state dict holds the master weights, so a run resumed from a checkpoint continues
from the same fp32 values (the checkpoint's bf16 model is their rounding) and ends with
the same weights as an uninterrupted run. :meth:`MasterWeightAdamW.fp32_weights_to_model`
puts the master weights back into the model before the final save, so the saved folder is
fp32, as with autocast.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

_HYPER = ("lr", "betas", "eps", "weight_decay")


class MasterWeightAdamW(torch.optim.Optimizer):
    """AdamW over fp32 copies of parameters that it turns into ``dtype`` (bf16).

    Construction takes the parameters in fp32, keeps copies and converts the parameters in
    place (``param.data``), so the model and the param groups (which the LR scheduler,
    gradient clipping and ``zero_grad`` act on) see the low-precision tensors."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        dtype: torch.dtype = torch.bfloat16,
    ):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        master_groups = []
        for group in self.param_groups:
            masters = []
            for param in group["params"]:
                masters.append(param.detach().to(torch.float32, copy=True))
                param.data = param.data.to(dtype)
            master_groups.append({**{k: group[k] for k in _HYPER}, "params": masters})
        devices = {m.device.type for g in master_groups for m in g["params"]}
        fused = devices <= {"cpu", "cuda"} or None  # torch's fused kernel where it has one
        self.master = torch.optim.AdamW(master_groups, lr=lr, fused=fused)
        # fp32 copies of the gradients, allocated once: a fresh 540 MB per step (SmolLM2)
        # cost more in page faults than the copy itself (0.32 -> 0.14 s a step)
        self._fp32_grads: list[list[torch.Tensor | None]] = [
            [None] * len(g["params"]) for g in master_groups
        ]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pairs = list(zip(self.param_groups, self.master.param_groups, strict=True))
        for (group, master_group), buffers in zip(pairs, self._fp32_grads, strict=True):
            master_group.update({k: group[k] for k in _HYPER})  # the scheduler sets group["lr"]
            grads, targets = [], []
            for i, (param, master) in enumerate(zip(group["params"], master_group["params"], strict=True)):  # fmt: skip
                if param.grad is None:
                    master.grad = None
                    continue
                if buffers[i] is None:
                    buffers[i] = torch.empty_like(master)
                master.grad = buffers[i]
                grads.append(param.grad)
                targets.append(buffers[i])
            if grads:
                torch._foreach_copy_(targets, grads)  # bf16 -> fp32 is exact
        self.master.step()
        for group, master_group in pairs:
            params, masters = group["params"], master_group["params"]
            if params:
                torch._foreach_copy_(params, masters)  # round to bf16 (to nearest even)
            for master in masters:
                master.grad = None
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # the bf16 groups' hyper-parameters (no per-param state)
        state["master"] = self.master.state_dict()
        state["master_weights"] = [m for g in self.master.param_groups for m in g["params"]]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        master_state, weights = state.pop("master"), state.pop("master_weights")
        super().load_state_dict(state)
        self.master.load_state_dict(master_state)
        masters = [m for g in self.master.param_groups for m in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        with torch.no_grad():
            for master, saved, param in zip(masters, weights, params, strict=True):
                master.copy_(saved)
                param.copy_(master)

    @torch.no_grad()
    def fp32_weights_to_model(self) -> None:
        """Give the parameters their fp32 master values (for the final save)."""
        for group, master_group in zip(self.param_groups, self.master.param_groups, strict=True):
            for param, master in zip(group["params"], master_group["params"], strict=True):
                param.data = master.detach().clone()
