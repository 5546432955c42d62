"""Every command and Python name the docs tell a user to type exists: ``llmner`` commands (sub-command
path and every ``--option``, resolved on the real command tree), ``python -m`` modules, and dotted
``llmner.`` / ``workers.`` / ``export.`` names (importable modules or attributes)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "docs" / "operations.md", REPO / "docs" / "training.md"]


def _code_blocks(text: str) -> list[str]:
    """The shell code blocks (fenced ``bash``, ``sh`` or no language)."""
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE) if lang in ("", "bash", "sh")]


def _backticked(text: str) -> list[str]:
    without_blocks = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.findall(r"`([^`\n]+)`", without_blocks)


def _command_segments(doc: Path) -> list[list[str]]:
    """Token lists of each ``llmner ...`` invocation in the doc's code blocks and inline code."""
    text = doc.read_text(encoding="utf-8")
    pieces = []
    for block in _code_blocks(text):
        pieces.extend(block.replace("\\\n", " ").splitlines())
    pieces.extend(_backticked(text))
    segments = []
    for piece in pieces:
        piece = piece.split(" #", 1)[0]
        for segment in re.split(r"&&|;|\|\||\|", piece):
            try:
                tokens = shlex.split(segment)
            except ValueError:
                tokens = segment.split()
            while tokens and tokens[0] in ("do", "then", "time", "nice"):
                tokens = tokens[1:]
            if tokens and tokens[0] in ("llmner", ".venv/bin/llmner"):
                segments.append(tokens)
    return segments


def _options(command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}


def _resolve(command, tokens: list[str]):
    """(the command ``tokens`` invoke, its sub-command path, options that command does not have)."""
    path: list[str] = []
    unknown = []
    for token in tokens[1:]:
        group = getattr(command, "commands", None)   # typer's groups are not click.Group subclasses
        if group is not None and token.startswith("-"):
            if token.split("=", 1)[0] not in _options(command):
                unknown.append(token)
        elif group is not None and token in group:
            command = group[token]
            path.append(token)
        elif group is not None:
            raise AssertionError(f"`llmner {' '.join(path + [token])}`: no such command")
        elif token.startswith("--") and token.split("=", 1)[0] not in _options(command):
            unknown.append(token.split("=", 1)[0])
    return command, path, unknown


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_llmner_command_in_the_docs_exists_with_its_options(doc):
    from llmner.cli.main import build_command

    root = build_command()
    segments = _command_segments(doc)
    assert segments, f"{doc.name}: no llmner command found (the extraction is broken)"
    problems = []
    for tokens in segments:
        try:
            _, path, unknown = _resolve(root, tokens)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        problems += [f"`llmner {' '.join(path)}` has no option {option}" for option in unknown]
    assert not problems, f"{doc.name}: " + "; ".join(problems)


def _queue_names() -> set[str]:
    from workers.settings import Settings

    s = Settings()
    return {s.ingest_queue, s.infer_queue}


def _importable(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_python_name_and_module_in_the_docs_imports(doc):
    text = doc.read_text(encoding="utf-8")
    names = set(re.findall(r"`((?:llmner|workers|export)(?:\.[A-Za-z_]\w*)+)(?:\(\))?`", text))
    modules = set(re.findall(r"python3? -m ([\w.]+)", text))
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        modules |= set(re.findall(r"^\s*(?:from|import) ([\w.]+)", block, flags=re.MULTILINE))
    missing = sorted(n for n in names - _queue_names() if not _importable(n))
    missing += sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert not missing, f"{doc.name} names what does not exist: {', '.join(missing)}"


def test_the_checker_catches_a_wrong_name_and_a_wrong_option(tmp_path):
    """The friction of issue 17: docs/operations.md named llmner.client.submit, which does not exist."""
    assert not _importable("llmner.client.submit") and _importable("workers.client.submit")
    fake = tmp_path / "x.md"
    fake.write_text("```bash\nllmner tag in.txt --no-such-option 1\nllmner nosuch\n```\n")
    from llmner.cli.main import build_command

    root = build_command()
    assert _resolve(root, _command_segments(fake)[0])[2] == ["--no-such-option"]
    with pytest.raises(AssertionError, match="no such command"):
        _resolve(root, _command_segments(fake)[1])


def test_the_readme_keeps_two_set_up_commands_and_one_python_example():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```(\w*)\n", text, flags=re.MULTILINE)
    assert blocks.count("bash") == 2 and blocks.count("python") == 1, blocks
