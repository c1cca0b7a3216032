"""torchvision-reference style: the model is a parameter of `train_one_epoch`, built in
`main`. With --zero-grad-after-forward, the gradients are zeroed after the forward, as
the torchvision references do (the previous step's gradients are still alive at the
forward peak)."""
import argparse

import torch
from torch import nn


def block(width):
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


def train_one_epoch(model, criterion, optimizer, data, zero_grad_after_forward):
    model.train()
    for x, y in data:
        if not zero_grad_after_forward:
            optimizer.zero_grad()
        output = model(x)
        loss = criterion(output, y)
        if zero_grad_after_forward:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--zero-grad-after-forward", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(*[block(args.width) for _ in range(args.depth)])
    device = torch.device("cpu")
    model.to(device)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    data = [(torch.randn(args.batch, args.width), torch.randn(args.batch, args.width)) for _ in range(4)]
    for _epoch in range(args.epochs):
        train_one_epoch(model, criterion, optimizer, data, args.zero_grad_after_forward)


if __name__ == "__main__":
    main()
