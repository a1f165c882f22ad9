"""Tracking tests run W&B for real, offline, with no key and no W&B settings from the machine."""

import pytest


@pytest.fixture(autouse=True)
def _no_wandb_environment(monkeypatch, tmp_path_factory):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    # wandb keeps settings and caches under the home directory; give it a scratch one
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path_factory.mktemp("wandb-config")))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path_factory.mktemp("wandb-cache")))
