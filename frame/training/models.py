"""Built-in models: small ones for quick experiments and benchmarks."""

from torch import nn


class MLP(nn.Module):
    """A multi-layer perceptron: Linear -> ReLU -> Dropout per hidden layer, then a Linear head."""

    def __init__(self, in_features: int, out_features: int, hidden=(64, 64), dropout: float = 0.0):
        super().__init__()
        layers, width = [], in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
