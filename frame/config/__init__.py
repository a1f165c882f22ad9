"""Config side of frame: the structured schema, validation, and the Hydra app glue.

Nothing here imports torch, so the command line stays fast.
"""
