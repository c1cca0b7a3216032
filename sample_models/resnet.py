"""A small CIFAR-style ResNet trained on random images.

Run:  python sample_models/resnet.py [--width 16 --blocks 2 --stages 3 ...]

The default (3 stages of 2 BasicBlocks, 16/32/64 channels) is ResNet-14 in the
numbering of He et al. 2015, section 4.2 (6n+2 layers with n=2). The data is
random, so the loss stays near ln(classes); the point is the memory profile: each
stage halves the spatial size and doubles the channels, so the early stages hold
most of the activation memory while the late stages hold most of the parameters.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(cin, cout, stride=1):
    # No bias: the BatchNorm right after it has its own shift, a bias would be redundant.
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        # In-place ReLU overwrites bn1's output instead of allocating a new tensor;
        # autograd then keeps only the ReLU output (which conv2 needs anyway).
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            # Projection shortcut (option B in the paper) when the shape changes.
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Out-of-place, unlike torchvision's `out += identity; relu_(out)`: the sum is
        # a short-lived temporary and only the ReLU output is saved for backward.
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, width, blocks, stages, classes):
        super().__init__()
        self.stem = nn.Sequential(
            conv3x3(3, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        layers, cin = [], width
        for s in range(stages):
            cout = width * 2**s  # channels double per stage ...
            stride = 1 if s == 0 else 2  # ... as the spatial size halves.
            stage = [BasicBlock(cin, cout, stride)]
            stage += [BasicBlock(cout, cout, 1) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
            cin = cout
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pool, any image size
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=16, help="channels of the first stage")
    p.add_argument("--blocks", type=int, default=2, help="BasicBlocks per stage")
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--image-size", type=int, default=32, help="CIFAR-10 is 32x32")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=20)
    # 10x below the paper's 0.1: labels are random, and a small lr keeps the loss
    # near ln(classes) instead of bouncing around.
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = ResNet(args.width, args.blocks, args.stages, args.classes).to(device)
    # Momentum 0.9 as in the paper: one momentum buffer per parameter (optimizer state).
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"resnet: {n_params / 1e6:.3f}M parameters, device {device}")

    for step in range(args.steps):
        opt.zero_grad(set_to_none=True)
        images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
        labels = torch.randint(0, args.classes, (args.batch,), device=device)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
