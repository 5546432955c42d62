"""Pack what a lent GPU needs for a campaign segment into ``.carry/`` (in .gitignore: it travels only
when a call names it), and print the device calls that carry it there (docs/training.md, "A GPU
segment").

The device machine reaches nothing outside it, and one call carries at most 64 MiB, the working tree
included (about 29 MiB here, most of it the shipped adapters). So the base model (the packaged GGUF,
94 MiB) travels in parts, one call each; the corpora the campaign trains on travel as one xz archive;
and the Python packages its image lacks or holds in other versions travel as wheels for its Python
3.12. ``benchmarks/campaign/gpu_segment.sh`` then joins, unpacks, installs and trains there.

    .venv/bin/python benchmarks/campaign/gpu_kit.py [--config benchmarks/campaign/gen-distr/config.yaml]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MIB = 1 << 20
# Packages the training run imports that the device image lacks (orjson, gguf, bioc and its readers'
# needs) or holds in another version than the one this project is tested with (transformers, peft,
# huggingface_hub and what it imports, typer, tokenizers). Pure-Python or abi3 wheels, except orjson.
WHEELS = ["transformers", "peft", "huggingface_hub", "httpx2", "httpcore2", "truststore", "tokenizers", "typer",
          "gguf", "orjson", "bioc", "intervaltree", "jsonlines"]
CALL_LIMIT_MIB = 64


def installed_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def tree_mib() -> float:
    """What a device call sends besides the carried paths: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                         capture_output=True).stdout
    return sum((REPO / p).stat().st_size for p in out.decode().split("\0") if p and (REPO / p).is_file()) / MIB


def pack(config_path: Path, carry: Path, part_mib: int) -> list[list[str]]:
    """Write the kit; returns the carried paths of each device call, in order."""
    from llmner.data_processing.corpora.registry import CORPUS_NAMES, data_dir
    from llmner.modeling.loading import packaged_gguf
    from llmner.training.generator import GeneratorTrainingConfig

    carry.mkdir(exist_ok=True)
    config = GeneratorTrainingConfig.from_file(config_path)

    gguf = packaged_gguf()
    data = gguf.read_bytes()
    for old in carry.glob("gguf.part-*"):
        old.unlink()
    parts = []
    for i in range(0, len(data), part_mib * MIB):
        part = carry / f"gguf.part-{len(parts) + 1}"
        part.write_bytes(data[i : i + part_mib * MIB])
        parts.append(part)
    (carry / "gguf.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {gguf.name}\n")
    print(f"{gguf.name}: {len(data) / MIB:.1f} MiB in {len(parts)} parts")

    archive = carry / "data.tar.xz"
    root = data_dir()
    # Training drops documents found in any corpus's test split, so every corpus travels then.
    corpora = list(dict.fromkeys(config.corpora + (list(CORPUS_NAMES) if config.exclude_test_overlap else [])))
    with tarfile.open(archive, "w:xz") as tar:
        for corpus in corpora:
            tar.add(root / corpus, arcname=corpus)
    print(f"{archive.name}: {', '.join(corpora)} from {root}, {archive.stat().st_size / MIB:.1f} MiB")

    wheels = carry / "wheels"
    wheels.mkdir(exist_ok=True)
    for old in wheels.glob("*.whl"):
        old.unlink()
    pins = [f"{name}=={installed_version(name)}" for name in WHEELS if name != "orjson"] + ["orjson"]
    # orjson has no abi3 wheel and this machine's 3.11 build does not fit: the newest 3.12 one that the
    # local index holds (its API is stable).
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(wheels), *pins], check=True)
    wheel_mib = sum(w.stat().st_size for w in wheels.glob("*.whl")) / MIB
    print(f"wheels: {len(list(wheels.glob('*.whl')))} files, {wheel_mib:.1f} MiB")

    # Calls: parts first (each alone), then the last part with the archive, the wheels and the run,
    # as long as every call stays under the limit with the working tree.
    room = CALL_LIMIT_MIB - tree_mib() - 1
    final = [archive, carry / "gguf.sha256", wheels]
    final_mib = archive.stat().st_size / MIB + wheel_mib
    calls: list[list[Path]] = []
    for part in parts:
        size = part.stat().st_size / MIB
        if part is parts[-1] and final_mib + size <= room:
            final.insert(0, part)
            continue
        if size > room:
            raise SystemExit(f"a part of {size:.1f} MiB does not fit beside the {tree_mib():.1f} MiB working tree: "
                             f"pack with a smaller --part-mib")
        calls.append([part])
    if final_mib > room:
        raise SystemExit(f"the last call ({final_mib:.1f} MiB) does not fit beside the working tree")
    calls.append(final)
    return [[str(p.relative_to(REPO)) for p in call] for call in calls]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "benchmarks/campaign/gen-distr/config.yaml")
    parser.add_argument("--carry", type=Path, default=REPO / ".carry")
    parser.add_argument("--part-mib", type=int, default=32)
    args = parser.parse_args()
    calls = pack(args.config, args.carry.resolve(), args.part_mib)
    print(f"\nworking tree {tree_mib():.1f} MiB per call; device calls, in order, back to back (a machine "
          "goes back 30 s after a call):")
    for i, carried in enumerate(calls, 1):
        command = "bash benchmarks/campaign/gpu_segment.sh [train options]" if i == len(calls) else "ls -la .carry"
        print(f"  {i}. carry {carried}: {command}")


if __name__ == "__main__":
    main()
