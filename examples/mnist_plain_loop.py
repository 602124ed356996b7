"""Sparse momentum in a plain PyTorch training loop on MNIST: the 5 lines marked "snfs" are all it takes."""

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets, transforms

import snfs  # snfs

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="data", help="the folder that contains MNIST/raw")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--limit", type=int, default=None, help="batches per epoch (a quick check)")
args = parser.parse_args()

torch.manual_seed(17)
to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
train = datasets.MNIST(args.data, train=True, download=True, transform=to_tensor)
test = datasets.MNIST(args.data, train=False, download=True, transform=to_tensor)
loader = torch.utils.data.DataLoader(train, batch_size=100, shuffle=True)
steps = min(len(loader), args.limit or len(loader))

model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
sparse = snfs.sparsify(
    model,
    optimizer,
    "momentum",
    density=0.05,  # snfs
    epochs=args.epochs,
    steps_per_epoch=steps,
)  # snfs

for _epoch in range(args.epochs):
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        sparse.step()  # snfs: instead of optimizer.step()

model.eval()
with torch.no_grad():
    x, y = next(iter(torch.utils.data.DataLoader(test, batch_size=len(test))))
    error = 100.0 * (model(x).argmax(1) != y).float().mean().item()
print(sparse.summary())
print(f"test error {error:.2f}% at density {sparse.density:.4f}")
sparse.export("mnist_sparse.pt")  # snfs: a small file; snfs.load_sparse(model, path) loads it back
