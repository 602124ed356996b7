"""Loss and error of a model over a split, as every run reports them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, autocast, channels_last: bool = False) -> tuple[float, float]:
    """(mean loss, error in percent) over all batches."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    wrong = 0
    n = 0
    for x, y in batches:
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double().cpu()
        wrong += int((out.argmax(1) != y).sum())
        n += len(y)
    model.train()
    return float(loss_sum) / max(1, n), 100.0 * wrong / max(1, n)
