"""Layer-2 fixtures: a seeded rng, and single-threaded numpy/torch for every test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _one_thread():
    """Our small matmuls and torch's run single-threaded (xdist workers share 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(before)
