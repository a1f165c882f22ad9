"""frame's Hydra launchers (sequential, local parallel, SLURM); see `launchers.py`."""
