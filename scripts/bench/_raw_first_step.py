"""A hand-written script doing what `frame train` does before its first step; prints the time after it.

With `--gc-off` it turns Python's garbage collector off before its imports, as frame does while it
imports (frame.launch.corridor.import_job_modules): the baseline for what frame costs beyond that.
"""

import gc
import sys
import time

if "--gc-off" in sys.argv:
    gc.disable()

import torch
from monai.networks.nets import UNet

from frame.data.synthetic import SyntheticOrgans
from frame.data.transforms import StandardScaleTensor
from frame.training.losses import DiceBCELoss

torch.manual_seed(0)
dataset = SyntheticOrgans(labels=["liver", "spleen", "kidney_l", "kidney_r"], num_samples=40, size=(32, 32, 32))
scale = StandardScaleTensor()
model = UNet(spatial_dims=3, in_channels=1, out_channels=4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
loss_fn = DiceBCELoss()
items = [dataset[i] for i in range(2)]
x = torch.stack([scale(s) for s, _ in items])
y = torch.stack([label for _, label in items])
loss = loss_fn(model(x), y)
loss.backward()
optimizer.step()
print(time.time())
