"""``scripts/setup-venv.sh`` without installing anything: run in a copy of the repository whose
``.venv`` holds stand-in ``python`` and ``pip`` programs that log their arguments (never the real
environment, which other checkouts share)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def fake_repo(tmp_path: Path, torch_version: str = "") -> Path:
    """A repository copy whose .venv reports ``torch_version`` as installed ("" for none)."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup-venv.sh", root / "scripts" / "setup-venv.sh")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = root / "calls.log"
    # python -c "import torch; print(torch.__version__)" answers with torch_version; other calls are logged.
    answer = f"echo {torch_version}; exit 0" if torch_version else "exit 1"
    (bin_dir / "python").write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = "-c" ]; then {answer}; fi\n'
        f'echo "python $*" >> "{log}"\n')
    (bin_dir / "pip").write_text(f'#!/usr/bin/env bash\necho "pip $*" >> "{log}"\n')
    for program in ("python", "pip"):
        (bin_dir / program).chmod(0o755)
    return root


def run_setup(root: Path, **env: str) -> list[str]:
    log = root / "calls.log"
    log.unlink(missing_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LLMNER_")}
    proc = subprocess.run(["bash", "scripts/setup-venv.sh"], cwd=root, env={**environ, **env}, capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines() if log.exists() else []


def torch_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if "torch==" in c]


def test_a_cpu_install_takes_torch_from_the_pytorch_cpu_index(tmp_path):
    root = fake_repo(tmp_path)
    calls = run_setup(root)
    assert torch_calls(calls) == [f"pip install -q --no-deps torch==2.13.0 --index-url {CPU_INDEX}"]
    assert calls.index(torch_calls(calls)[0]) < calls.index("pip install -q -e .[dev]")   # torch first
    assert run_setup(root) == []   # installed: the stamp makes a second run a no-op


def test_an_installed_cpu_torch_is_kept_offline(tmp_path):
    calls = run_setup(fake_repo(tmp_path, "2.13.0+cpu"))
    assert torch_calls(calls) == [] and "pip uninstall -q -y torch" not in calls and "pip install -q -e .[dev]" in calls


def test_the_wrong_build_is_replaced(tmp_path):
    calls = run_setup(fake_repo(tmp_path, "2.13.0"))   # the CUDA build on a CPU install
    assert calls.index("pip uninstall -q -y torch") < calls.index(f"pip install -q --no-deps torch==2.13.0 --index-url {CPU_INDEX}")
    gpu_calls = run_setup(fake_repo(tmp_path / "g", "2.13.0+cpu"), LLMNER_DEVICE="gpu")
    assert "pip uninstall -q -y torch" in gpu_calls and torch_calls(gpu_calls) == ["pip install -q --no-deps torch==2.13.0"]


def test_a_gpu_install_takes_the_cuda_build_and_the_gpu_extra(tmp_path):
    root = fake_repo(tmp_path)
    calls = run_setup(root, LLMNER_DEVICE="gpu")
    assert torch_calls(calls) == ["pip install -q --no-deps torch==2.13.0"] and "pip install -q -e .[dev,gpu]" in calls
    assert calls.index("pip uninstall -q -y onnxruntime") > calls.index("pip install -q -e .[dev,gpu]")
    # switching a CPU environment to GPU is a change the stamp sees
    assert run_setup(root, LLMNER_DEVICE="gpu") == [] and run_setup(root) != []


def test_an_unknown_device_is_refused(tmp_path):
    root = fake_repo(tmp_path)
    proc = subprocess.run(["bash", "scripts/setup-venv.sh"], cwd=root, env={**os.environ, "LLMNER_DEVICE": "tpu"},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "LLMNER_DEVICE must be cpu or gpu" in proc.stderr


def test_the_gpu_install_is_documented():
    operations = (REPO / "docs" / "operations.md").read_text()
    assert "## GPU install" in operations and "LLMNER_DEVICE=gpu bash scripts/setup-venv.sh" in operations
    assert "docs/operations.md" in (REPO / "README.md").read_text().split("## Python API")[0]
