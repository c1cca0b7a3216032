import torch
model = torch.nn.Linear(4, 4
print("unclosed"
