"""Third-party noise hidden while llmner loads and runs models, scoped to llmner's own calls.

transformers prints a "Loading weights" bar and FutureWarnings (deprecated cache arguments) that say
nothing to a user of ``llmner.load()`` / ``nlp(text)``. They are hidden inside llmner's calls only:
the caller's warning filters and transformers settings are restored on the way out. ``verbose=True``
(``llmner.load(verbose=True)``) keeps them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def library_noise_hidden(verbose: bool = False) -> Iterator[None]:
    if verbose:
        yield
        return
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


__all__ = ["library_noise_hidden"]
