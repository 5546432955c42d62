"""``llmner warm [BUNDLE]``: build everything the bundle's first load would derive (base models'
safetensors, the selector's ONNX graph, the normalizer's name embeddings), so that workers start fast.

The images run it at build time with ``LLMNER_CACHE_DIR`` set to a directory they then name in
``LLMNER_PREBUILT_DIR`` (read first, never written; ``llmner.cache``): a pod's cache volume starts
empty, and without that every new worker would convert the models again before taking a task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmner.cli.output import say
from llmner.errors import DataNotFoundError


def warm(
    bundle: Annotated[Path | None, typer.Argument(help="model bundle to warm; default: the default bundle")] = None,
    onnx_variant: Annotated[list[str] | None, typer.Option("--onnx-variant", help="selector ONNX graph to build (repeatable): int8 (served on a CPU), fp16 (served with CUDA) or fp32; default: the one this machine serves")] = None,
) -> None:
    """Build the bundle's derived artefacts (models, selector ONNX, normalizer embeddings) into the cache."""
    from llmner.bundle import default_bundle_path
    from llmner.cache import cache_dir
    from llmner.warm import warm_bundle

    if bundle is None:
        bundle = default_bundle_path()
        if bundle is None:
            raise DataNotFoundError("no default bundle is installed: name a bundle, `llmner warm BUNDLE`")
    say(f"warming {bundle} into {cache_dir()}")
    for artefact in warm_bundle(bundle, onnx_variant):
        done = f"built in {artefact.seconds:.1f} s" if artefact.built else "present"
        say(f"{artefact.what}: {done} -> {artefact.path}")


def register(app: typer.Typer) -> None:
    app.command("warm")(warm)
