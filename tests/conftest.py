"""Makes ``tests/`` importable (``from corpora_helpers import ...``), keeps tests on few threads, and
holds the fixtures shared by the worker tests (their harness is ``workers.testing``; the tiny random
models are ``llmner.testing``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def require_redis() -> None:
    """Skips the test cleanly when no Redis answers at ``workers.testing.TEST_REDIS_URL``."""
    from workers.testing import redis_problem

    problem = redis_problem()
    if problem:
        pytest.skip(problem)
