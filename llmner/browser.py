"""Headless Chromium for checking the viewer's pages in a real browser (tests, benchmarks/viewer.py).

Debian's ``chromium`` package (``.ci/run`` installs it when missing). Runs as root need
``--no-sandbox``; each call gets its own profile directory so that parallel runs never share one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from llmner.errors import DataNotFoundError

_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, _NAMES) if p), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    exe = find_chromium()
    if exe is None:
        raise DataNotFoundError("no headless Chromium found (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="llmner-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--disable-extensions", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(page: Path, timeout: float = 120.0) -> str:
    """The DOM after the page's scripts ran, serialized by the browser."""
    return _run(["--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()], timeout).stdout


def screenshot(page: Path, png: Path, width: int = 1100, height: int = 1400, timeout: float = 120.0) -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(["--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
          page.resolve().as_uri()], timeout)
    return png
