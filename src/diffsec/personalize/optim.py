"""AdamW with its state kept per row: one optimizer per textual-inversion run, in one tensor.

Batched textual inversion stacks R runs' embeddings into an R x D parameter. Stock
`torch.optim.AdamW` is elementwise too, but it keeps one step counter (and one lr) for the whole
tensor; here every row has its own step count, lr and moments, and `step(rows=...)` can leave
rows untouched, so row k's trajectory depends on row k's gradients only, whichever runs share
the batch. The arithmetic is torch's single-tensor AdamW (decoupled weight decay), so a row
follows exactly what `torch.optim.AdamW` would do for that run alone.
"""

from __future__ import annotations

import torch


class RowAdamW:
    def __init__(self, param: torch.Tensor, lr: float | torch.Tensor = 5e-4,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        if param.ndim != 2:
            raise ValueError(f"RowAdamW wants an R x D parameter, got {tuple(param.shape)}")
        self.param = param
        rows = param.shape[0]
        self.lr = torch.as_tensor(lr, dtype=torch.float64).expand(rows).clone()
        self.betas, self.eps, self.weight_decay = (float(betas[0]), float(betas[1])), float(eps), float(weight_decay)
        self.exp_avg = torch.zeros_like(param, memory_format=torch.contiguous_format).detach()
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)
        self.steps = torch.zeros(rows, dtype=torch.int64)

    def zero_grad(self) -> None:
        self.param.grad = None

    @torch.no_grad()
    def step(self, rows: torch.Tensor | None = None) -> None:
        """Update the rows flagged in `rows` (bool R; default all) from `param.grad`."""
        grad = self.param.grad
        if grad is None:
            return
        active = torch.ones(len(self.steps), dtype=torch.bool) if rows is None else rows.cpu().bool()
        self.steps += active.long()
        b1, b2 = self.betas
        # Bias corrections per row, in float64 on the CPU like torch's Python-float scalars.
        n = self.steps.clamp(min=1).double()
        step_size = self.lr / (1 - b1 ** n)
        bc2_sqrt = (1 - b2 ** n).sqrt()

        def col(v):
            return v.to(self.param.device, self.param.dtype).unsqueeze(1)

        on = col(active.double())
        p, m, v = self.param, self.exp_avg, self.exp_avg_sq
        new_p = p * (1 - col(self.lr * self.weight_decay))
        new_m = m.lerp(grad, 1 - b1)
        new_v = v * b2 + grad * grad * (1 - b2)
        new_p = new_p - col(step_size) * new_m / (new_v.sqrt() / col(bc2_sqrt) + self.eps)
        # Inactive rows keep parameter and moments bit for bit.
        keep = on == 0
        p.copy_(torch.where(keep, p, new_p))
        m.copy_(torch.where(keep, m, new_m))
        v.copy_(torch.where(keep, v, new_v))

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg.detach().cpu().clone(),
                "exp_avg_sq": self.exp_avg_sq.detach().cpu().clone(),
                "steps": self.steps.clone(), "lr": self.lr.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["exp_avg"].shape != self.exp_avg.shape:
            raise ValueError(f"optimizer state for {tuple(state['exp_avg'].shape)}, "
                             f"parameter is {tuple(self.exp_avg.shape)}")
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps.copy_(state["steps"])
        self.lr.copy_(state["lr"])
