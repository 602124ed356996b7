"""What ``precision=fp32|bf16|fp16`` means on a device: an autocast context and a gradient scaler."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def mixed_precision(
    precision: str, device: torch.device
) -> tuple[Callable[[], contextlib.AbstractContextManager], torch.amp.GradScaler, str | None]:
    """(autocast factory, grad scaler, a note for the user or None) for ``precision`` on ``device``.

    bf16 autocast exists on CPUs too; fp16 there would run without a grad scaler, so it stays fp32.
    """
    dtype = PRECISIONS[precision]
    use_amp = dtype is not None and (device.type == "cuda" or dtype == torch.bfloat16)
    note = None
    if dtype is not None and not use_amp:
        note = (
            f"precision={precision} has no autocast on {device.type} here: this run computes in fp32 "
            f"(precision=bf16 uses CPU autocast)"
        )
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if use_amp else contextlib.nullcontext
    return autocast, torch.amp.GradScaler(device.type, enabled=use_amp and dtype == torch.float16), note
