"""Pins of what frame needs from PyTorch's internals (frame/compat/torch.py): a torch release that changes
one fails the test named beside its use there."""

import torch

from frame.compat import torch as compat


def test_steps_with_scaler():
    weight = torch.nn.Parameter(torch.ones(2))
    assert not compat.steps_with_scaler(torch.optim.SGD([weight], lr=0.1))
    assert compat.steps_with_scaler(torch.optim.Adam([weight], lr=0.1, fused=True))  # unscales in its step


def test_non_finite_check():
    found, scale = torch.zeros(1), torch.ones(1)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    compat.non_finite_check_(grads, found, scale)
    assert found.item() == 0 and grads[0].tolist() == [1.0, 2.0]  # a scale of 1 leaves them as they are
    compat.non_finite_check_([torch.tensor([1.0, float("nan")])], found, scale)
    assert found.item() == 1


def test_stop_loader_workers():
    loader = torch.utils.data.DataLoader(list(range(8)), batch_size=2, num_workers=1, persistent_workers=True)
    assert [batch.tolist() for batch in loader][0] == [0, 1]
    workers = loader._iterator._workers  # the live iterator keeps its worker processes between epochs
    assert all(worker.is_alive() for worker in workers)
    compat.stop_loader_workers(loader)
    assert not any(worker.is_alive() for worker in workers)
    compat.stop_loader_workers(torch.utils.data.DataLoader([1]))  # never iterated: nothing to stop


def test_keep_state_metadata():
    state = torch.nn.BatchNorm1d(2).state_dict()
    copy = type(state)(state)
    compat.keep_state_metadata(state, copy)
    assert copy._metadata[""]["version"] == torch.nn.BatchNorm1d._version  # what load_state_dict reads
    torch.nn.BatchNorm1d(2).load_state_dict(copy)
