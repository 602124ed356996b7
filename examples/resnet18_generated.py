"""torchvision's ResNet-18 trained sparse with RigL on generated CIFAR-shaped data (3x32x32, 10 classes).

Every convolution and the classifier are sparse at 10% (ERK across layers, RigL's default); the
first convolution is kept dense by name, as many papers do. The data are random images whose class
shifts their mean, so the loss has something to learn in a few steps on a CPU.
"""

import argparse

import torch
import torch.nn.functional as F
from torchvision.models import resnet18

import snfs

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--batch", type=int, default=32)
args = parser.parse_args()

torch.manual_seed(0)
templates = torch.randn(10, 3, 32, 32)
labels = torch.randint(0, 10, (args.steps, args.batch))
images = templates[labels] + 0.5 * torch.randn(args.steps, args.batch, 3, 32, 32)

model = resnet18(num_classes=10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
sparse = snfs.sparsify(
    model,
    optimizer,
    "rigl",
    density=0.1,
    epochs=1,
    steps_per_epoch=args.steps,
    exclude=["conv1.weight"],
    delta_t=max(1, args.steps // 4),
)

losses = []
for x, y in zip(images, labels):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    if sparse.step():
        print(f"step {sparse.steps}: RigL moved weights, density {sparse.density:.4f}")
    losses.append(loss.item())

k = max(1, len(losses) // 5)
print(f"loss: first {k} steps {sum(losses[:k]) / k:.3f}, last {k} steps {sum(losses[-k:]) / k:.3f}")
print(
    f"{len(sparse.masks)} sparse weights at density {sparse.density:.4f}; "
    f"conv1 dense: {'conv1.weight' not in sparse.masks}"
)
