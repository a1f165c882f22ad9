"""frame's Hydra launchers (sequential, local parallel, SLURM; `launchers.py`) and its default sweeper (`sweeper.py`)."""
