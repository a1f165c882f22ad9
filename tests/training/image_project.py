"""A torchvision user's image-classification project in a temp directory: ImageFolder `train/` and
`val/` folders of 32x32 PNGs (four classes of noisy patterns: horizontal stripes, vertical stripes,
a checkerboard, a disc) and a small CNN with BatchNorm in the project's own module `tinycnn.py`.
"""

import textwrap
from pathlib import Path

import numpy as np

CLASSES = ["checker", "disc", "hstripes", "vstripes"]  # ImageFolder's order: sorted folder names
SIZE = 32

MODEL = '''
    from torch import nn


    class TinyCNN(nn.Module):
        """conv-BN-ReLU x3 with pooling, then a linear head: a small net with norm layers and biases."""

        def __init__(self, num_classes=4, width=16):
            super().__init__()
            def block(cin, cout):
                return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))
            self.backbone = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 2 * width),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            return self.head(self.backbone(x))
'''


def pattern(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 image of `kind`: random period, phase, colours, position, and noise."""
    y, x = np.mgrid[:SIZE, :SIZE]
    period, phase = rng.integers(4, 9), rng.integers(0, 8)
    if kind == "hstripes":
        mask = ((y + phase) // (period // 2)) % 2 == 0
    elif kind == "vstripes":
        mask = ((x + phase) // (period // 2)) % 2 == 0
    elif kind == "checker":
        mask = (((x + phase) // (period // 2)) + ((y + phase) // (period // 2))) % 2 == 0
    else:
        cy, cx, r = rng.integers(9, SIZE - 9), rng.integers(9, SIZE - 9), rng.integers(5, 9)
        mask = (y - cy) ** 2 + (x - cx) ** 2 <= r**2
    fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    while np.abs(fg - bg).sum() < 150:  # enough contrast to see the pattern
        fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = np.where(mask[..., None], fg, bg) + rng.normal(0, 25, (SIZE, SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_image_project(root: Path, per_class: int = 40, val_per_class: int = 15, seed: int = 0) -> Path:
    """Write `root/data/train/<class>/*.png`, `root/data/val/<class>/*.png` and `root/tinycnn.py`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for kind in CLASSES:
            folder = root / "data" / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(pattern(kind, rng)).save(folder / f"{i:03d}.png")
    (root / "tinycnn.py").write_text(textwrap.dedent(MODEL).lstrip())
    return root
