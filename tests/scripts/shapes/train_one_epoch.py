"""torchvision-reference style: the model is a parameter of `train_one_epoch`, built in
`main`, and the gradients are zeroed after the forward (the previous step's gradients
are still alive at the forward peak)."""
import argparse

import torch
from torch import nn


def block(width):
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


def train_one_epoch(model, criterion, optimizer, data):
    model.train()
    for x, y in data:
        output = model(x)
        loss = criterion(output, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(*[block(args.width) for _ in range(args.depth)])
    device = torch.device("cpu")
    model.to(device)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    data = [(torch.randn(args.batch, args.width), torch.randn(args.batch, args.width)) for _ in range(4)]
    for _epoch in range(args.epochs):
        train_one_epoch(model, criterion, optimizer, data)


if __name__ == "__main__":
    main()
