"""Shared fixtures: the tiny synthetic data set and a clean working directory per test."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
TINY_YAML = TESTS / "data" / "tiny.yaml"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

sys.path.insert(0, str(REPO))  # the checkout's package and run script, not an older install


def pytest_configure(config):
    """pytest resets warning filters around each test, so the foreign deprecations that the
    package silences at import (compat.py's table) are given to pytest as ini filters too."""
    from recbole_llmd4rec.compat import _FOREIGN_DEPRECATIONS

    for message, category in _FOREIGN_DEPRECATIONS:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category.__name__}")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a temporary directory: RecBole writes log/ and saved/ relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny(workdir):
    """Arguments for ``run_llmd4rec`` / ``Config`` on the tiny data set."""
    return {
        "dataset": "tiny",
        "config_file_list": [str(TINY_YAML)],
        "config_dict": {
            "data_path": str(TESTS / "data"),
            "checkpoint_dir": str(workdir / "saved"),
        },
    }


def run_script(*args, cwd=None, timeout=600):
    """Run ``run_llmd4rec.py`` in a fresh interpreter; returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, str(REPO / "run_llmd4rec.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def train_steps(model, batch, steps, lr=3e-3):
    """A few Adam steps of ``model.calculate_loss`` on one batch; returns the losses."""
    import torch

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
