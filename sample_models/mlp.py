"""A stack of identical Linear+ReLU blocks whose activation memory has a closed form.

Run:  python sample_models/mlp.py [--depth 8 --width 256 --batch 64 --out 16]

Activation memory, in bytes, is what autograd has saved for backward at the end
of forward, counted once per storage, not counting the input batch x, the
target y or the parameters (all float32, 4 bytes per element):

* each Block's ReLU (out of place) saves its output: batch * width * 4 bytes;
* each Linear saves its input (and its weight, a parameter). That input is the
  previous Block's ReLU output -- the same storage, not counted twice -- or, for
  the first Linear, x (excluded);
* mse_loss saves its input, the head's output (batch * out * 4 bytes), and the
  target y (excluded).

    activation_bytes = depth * batch * width * 4 + batch * out * 4

Defaults: 8 * 64 * 256 * 4 + 64 * 16 * 4 = 524288 + 4096 = 528384 bytes.
(Checked by collecting the storages packed by torch.autograd.graph.
saved_tensors_hooks during forward.)

SGD without momentum keeps no optimizer state, so what remains per step is
parameters, their gradients, the batch, and these activations.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        # Out of place on purpose: relu saves its own output, a new tensor per block,
        # which is what makes the closed form above depth * batch * width.
        return torch.relu(self.fc(x))


class MLP(nn.Module):
    def __init__(self, width, depth, out):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(width) for _ in range(depth)])
        self.head = nn.Linear(width, out)

    def forward(self, x):
        return self.head(self.blocks(x))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=8, help="number of Blocks")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=int, default=16, help="regression targets per sample")
    p.add_argument("--steps", type=int, default=20)
    # Small enough that 8 ReLU layers on random targets do not blow up.
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = MLP(args.width, args.depth, args.out).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)  # no momentum: no state
    formula = args.depth * args.batch * args.width * 4 + args.batch * args.out * 4
    print(f"mlp: depth {args.depth}, width {args.width}; "
          f"closed-form activation bytes {formula}")

    for step in range(args.steps):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(args.batch, args.width, device=device)
        y = torch.randn(args.batch, args.out, device=device)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
