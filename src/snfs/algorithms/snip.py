"""SNIP, single-shot network pruning (Lee et al. 2019, Eq. 6): keep the global top-k of |g * w| at initialisation.

Once, in ``init_masks``, one mini-batch from ``ctx.sample_batch()`` is passed through the dense
model at its initial weights; every sparse weight is scored by |dL/dw * w| (the saliency of
Eq. 6 up to its normalisation, which does not change the ranking), and the k = round(d * total)
highest scores over all sparse layers together stay active. The mask is then fixed and gradients
are masked, as for static sparse training.

The scoring pass leaves the model as it found it: it uses ``torch.autograd.grad`` (no ``.grad``
is written) and restores buffers (e.g. BatchNorm running statistics). ``ctx.sample_batch()``
returns the first batch of the run's own batch order and restores the batch generator, so a SNIP
run sees the same batches in the same order as any other algorithm with the same seed. Under DDP
the trainer hands every rank the whole first global batch, so every rank builds the single-process
mask; a loader that can only give this rank's share sets ``ctx.extra["sample_batch_is_shard"]``,
and the gradients are then averaged over ranks before scoring.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import COMMON_OPTIONS, SparseAlgorithm
from snfs.masks import MaskState, check_every_layer_has_weights, uniform_counts


def snip_masks(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the ``k`` largest scores over all layers together (Lee et al. 2019, Eq. 6)."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().float() for n in names])
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        keep[torch.topk(flat, k, largest=True, sorted=False).indices] = True
    masks, start = {}, 0
    for n in names:
        numel = scores[n].numel()
        masks[n] = keep[start : start + numel].view_as(scores[n])
        start += numel
    return masks


@ALGORITHMS.register("snip")
class SNIP(SparseAlgorithm):
    """Connection sensitivity |g * w| on one batch at initialisation; fixed global top-k mask."""

    name = "snip"
    mask_gradients = True
    flops_accounting = "sparse"
    needs_sample_batch = True
    index_space = True  # a fixed mask: nothing to choose after the start
    options = COMMON_OPTIONS  # the mask comes from the scores, not from an initial distribution

    def saliency(self) -> dict[str, torch.Tensor]:
        """|dL/dw * w| of every sparse weight on one training mini-batch, at the current (dense) weights."""
        if self.ctx.sample_batch is None or self.ctx.loss_fn is None:
            raise RuntimeError("SNIP needs ctx.sample_batch and ctx.loss_fn to score connections")
        model = self.ctx.model
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        x, y = self.ctx.sample_batch()
        loss = self.ctx.loss_fn(model(x), y)
        weights = list(self.params.values())
        grads = list(torch.autograd.grad(loss, weights, allow_unused=True))
        if self.ctx.extra.get("sample_batch_is_shard") and dist.is_available() and dist.is_initialized():
            # under DDP this rank scored its share of the batch only: average the gradients over ranks,
            # so that every rank scores the whole batch and keeps the same mask
            grads = [torch.zeros_like(p) if g is None else g.detach().clone() for p, g in zip(weights, grads)]
            for g in grads:
                dist.all_reduce(g)
                g.div_(dist.get_world_size())
        scores = {}
        for (k, p), g in zip(self.params.items(), grads):
            scores[k] = (g * p).detach().abs() if g is not None else torch.zeros_like(p)
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        return scores

    def init_masks(self) -> MaskState:
        # SNIP places the k weights by saliency; a density at which even a uniform split leaves a layer empty is refused
        shapes = {name: p.shape for name, p in self.params.items()}
        check_every_layer_has_weights(shapes, uniform_counts(shapes, self.ctx.density), self.ctx.density, "uniform")
        scores = self.saliency()
        total = sum(p.numel() for p in self.params.values())
        k = int(round(self.ctx.density * total))
        self.masks = MaskState(snip_masks(scores, k))
        self.masks.apply(self.params)
        return self.masks
