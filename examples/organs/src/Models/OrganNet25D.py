"""A small 2.5D segmentation network for organs at risk (after OrganNet2.5D, Chen et al. 2021)."""

import torch
from torch import nn


def _block(in_channels: int, out_channels: int, kernel: tuple, dilation: int = 1) -> nn.Sequential:
    """Two (convolution, instance norm, leaky ReLU) layers that keep the size."""
    padding = tuple(dilation * (k // 2) for k in kernel)
    layers = []
    for channels in (in_channels, out_channels):
        layers += [
            nn.Conv3d(channels, out_channels, kernel, padding=padding, dilation=dilation),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        ]
    return nn.Sequential(*layers)


class OrganNet25D(nn.Module):
    """2D convolutions in the axial plane first (CT slices are thick), 3D ones deeper down.

    Input `(batch, in_channels, y, z, x)` with y and x divisible by 4 and z by 2; output one logit
    channel per organ, same size. Organs are independent channels (sigmoid, not softmax).

    Args:
        in_channels: image channels (1 for CT).
        num_classes: organs, one output channel each.
        base_channels: width of the first stage; deeper stages double it.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 9, base_channels: int = 8):
        super().__init__()
        c = base_channels
        axial = (3, 1, 3)  # kernel over (y, z, x): in-plane only
        self.encode_2d = _block(in_channels, c, axial)
        self.down_2d = nn.MaxPool3d((2, 1, 2))
        self.encode_3d = _block(c, 2 * c, (3, 3, 3))
        self.down_3d = nn.MaxPool3d(2)
        self.bottom = _block(2 * c, 4 * c, (3, 3, 3), dilation=2)  # dilated: a wide view at low cost
        self.up_3d = nn.ConvTranspose3d(4 * c, 2 * c, 2, stride=2)
        self.decode_3d = _block(4 * c, 2 * c, (3, 3, 3))
        self.up_2d = nn.ConvTranspose3d(2 * c, c, (2, 1, 2), stride=(2, 1, 2))
        self.decode_2d = _block(2 * c, c, axial)
        self.head = nn.Conv3d(c, num_classes, 1)
        # Every organ starts at a probability of 0.02, about its share of the voxels, not 0.5: otherwise the
        # first hundred steps only learn that most voxels are background (the prior of Lin et al., 2017).
        nn.init.constant_(self.head.bias, -4.0)

    def forward(self, x):
        skip_2d = self.encode_2d(x)
        skip_3d = self.encode_3d(self.down_2d(skip_2d))
        x = self.bottom(self.down_3d(skip_3d))
        x = self.decode_3d(torch.cat([self.up_3d(x), skip_3d], dim=1))
        x = self.decode_2d(torch.cat([self.up_2d(x), skip_2d], dim=1))
        return self.head(x)
