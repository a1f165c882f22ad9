"""The runtime layer: a job built into objects and trained (build, loop, state, checkpoints, metrics). torch lives here."""
