"""A small nn.TransformerEncoder trained sparse with sparse momentum and Adam, its attention projections included.

``nn.MultiheadAttention`` keeps its query/key/value projection as one parameter, ``in_proj_weight``,
not an ``nn.Linear``: by default it would stay dense (and be listed as such at start-up), so it is
added by name pattern. The task, on generated tokens: predict each token's successor mod the vocabulary.
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import snfs

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

VOCAB, WIDTH, LENGTH = 32, 64, 16
torch.manual_seed(0)


class TokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, nhead=4, dim_feedforward=128, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)))


model = TokenModel()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
steps_per_epoch = max(1, args.steps // args.epochs)
sparse = snfs.sparsify(
    model,
    optimizer,
    "momentum",
    density=0.2,
    epochs=args.epochs,
    steps_per_epoch=steps_per_epoch,
    include=["*.self_attn.in_proj_weight"],
)

for epoch in range(args.epochs):
    for _ in range(steps_per_epoch):
        tokens = torch.randint(0, VOCAB, (32, LENGTH))
        logits = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), ((tokens + 1) % VOCAB).flatten())
        optimizer.zero_grad()
        loss.backward()
        sparse.step()
    accuracy = (logits.argmax(-1) == (tokens + 1) % VOCAB).float().mean().item()
    print(f"epoch {epoch + 1}: loss {loss.item():.3f}, token accuracy {100 * accuracy:.1f}%")

attention = [k for k in sparse.masks if k.endswith("in_proj_weight")]
print(
    f"sparse attention projections: {len(attention)}, their density "
    f"{sum(int(sparse.masks[k].sum()) for k in attention) / sum(sparse.masks[k].numel() for k in attention):.3f}"
)
print(sparse.summary())
