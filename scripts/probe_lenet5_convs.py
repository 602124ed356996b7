"""Probe: how close LeNet-5-Caffe's two convolutions run to this CPU's arithmetic limit, on one thread.

Times each convolution of a training step (batch 100, MNIST shapes) alone, forward and forward +
backward, in NCHW and channels_last, with oneDNN and with PyTorch's native kernels, and prints the
multiply-adds per second each reaches. conv1 has no input gradient (its input is the image); conv2
has one. Run it on a quiet machine: ``python scripts/probe_lenet5_convs.py``. The findings are in
docs/findings/lenet5_caffe_speed.md (why a 100-epoch run cannot get 2x faster on one core without
computing less).
"""

from __future__ import annotations

import torch
from bench import best_time
from torch import nn


def best_ms(fn) -> float:
    return best_time(fn, repeats=5, inner=20, warmup=3) * 1e3


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # (name, layer, input shape, whether the input needs a gradient); multiply-adds of one forward
    layers = [
        ("conv1", nn.Conv2d(1, 20, 5), (100, 1, 28, 28), False),
        ("conv2", nn.Conv2d(20, 50, 5), (100, 20, 12, 12), True),
    ]
    print(f"torch {torch.__version__}, 1 thread; GMAC/s = 1e9 multiply-adds per second")
    print("| layer | layout | kernels | forward (ms) | forward GMAC/s | forward + backward (ms) | fwd + bwd GMAC/s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, layer, shape, input_grad in layers:
        out_hw = (shape[2] - 4) * (shape[3] - 4)
        macs = shape[0] * layer.out_channels * out_hw * layer.in_channels * 25
        # backward: the weight gradient always, the input gradient only where the input needs one
        macs_fb = macs * (3 if input_grad else 2)
        for layout in (torch.contiguous_format, torch.channels_last):
            for onednn in (True, False):
                torch.backends.mkldnn.enabled = onednn
                conv = nn.Conv2d(layer.in_channels, layer.out_channels, 5).to(memory_format=layout)
                x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_(input_grad)
                grad = torch.randn_like(conv(x))
                fwd = best_ms(lambda: conv(x))
                fwd_bwd = best_ms(lambda: conv(x).backward(grad))
                print(
                    f"| {name} | {'channels_last' if layout is torch.channels_last else 'NCHW'} | "
                    f"{'oneDNN' if onednn else 'native'} | {fwd:.2f} | {macs / fwd / 1e6:.1f} | {fwd_bwd:.2f} | "
                    f"{macs_fb / fwd_bwd / 1e6:.1f} |"
                )
    torch.backends.mkldnn.enabled = True


if __name__ == "__main__":
    main()
