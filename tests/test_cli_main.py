import subprocess
import sys


def test_errors_are_one_line_without_traceback(tmp_path):
    missing = tmp_path / ("a-very-long-directory-name-" * 6) / "gold.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "llmner.cli.main", "eval", "--gold", str(missing), "--pred", str(missing)],
        capture_output=True, text=True, env={"COLUMNS": "40", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert err.startswith("error:") and "\n" not in err, err


def test_streaming_commands_are_discovered_through_the_entry_point():
    proc = subprocess.run([sys.executable, "-m", "llmner.cli.main", "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0
    for command in ("data", "eval", "tag", "train", "curate", "run", "submit", "results"):
        assert f" {command} " in proc.stdout, command
