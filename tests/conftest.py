"""Checks the test device before anything runs (see ``tests/_helpers.py``)."""

import os

import pytest
import torch


def pytest_configure(config):
    device = os.environ.get("SDFSEG_TEST_DEVICE", "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError(f"SDFSEG_TEST_DEVICE={device}: CUDA is not available on this machine")
