"""PyTorch past its public API: every such use of frame's is here, with what frame needs of it;
tests/compat/test_torch.py pins each (named below). torch is not capped for them: each is a long-standing
attribute that torch's own GradScaler and DataLoader rely on.

- `steps_with_scaler(optimizer)`: the optimizer unscales and checks its gradients inside its own step
  (fused Adam/AdamW/SGD set `_step_supports_amp_scaling`, which GradScaler reads), so frame must not read
  a finiteness flag on the host first. Pin: test_steps_with_scaler.
- `non_finite_check_(grads, found_inf, scale)`: `torch._amp_foreach_non_finite_check_and_unscale_`,
  GradScaler's own kernel: one fused check of many gradients for inf/NaN, no host sync. Pin:
  test_non_finite_check.
- `stop_loader_workers(loader)`: a DataLoader's live iterator (`_iterator`) and its `_shutdown_workers`,
  what the DataLoader itself calls when the iterator is dropped: persistent workers stopped before
  multiprocessing's exit hook waits for them. Pin: test_stop_loader_workers.
- `keep_state_metadata(source, copy)`: a module state_dict's `_metadata` (each submodule's version, which
  `load_state_dict` reads to upgrade old layouts) carried onto a copy of it. Pin: test_keep_state_metadata.
"""

import torch

__all__ = ["steps_with_scaler", "non_finite_check_", "stop_loader_workers", "keep_state_metadata"]


def steps_with_scaler(optimizer) -> bool:
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


def non_finite_check_(grads, found_inf, scale) -> None:
    """Sets `found_inf` (a 1-element tensor) to 1 when a gradient holds inf/NaN; grads are multiplied by
    `scale`'s value (1.0: unchanged)."""
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, scale)


def stop_loader_workers(loader) -> None:
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def keep_state_metadata(source, copy) -> None:
    if hasattr(source, "_metadata"):
        copy._metadata = source._metadata
