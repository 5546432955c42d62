"""Shared bits of the corpus tests: the data directory (skip the data tests when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmner.data_processing.corpora import data_dir
from llmner.errors import DataNotFoundError


def shared_data() -> Path:
    try:
        return data_dir()
    except DataNotFoundError as exc:  # a checkout without ../shared/data: the reader tests on synthetic data still run
        pytest.skip(f"corpus data not available: {exc}")


def as_dicts(docs) -> list[dict]:
    return [d.to_dict() for d in docs]
