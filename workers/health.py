"""Health check for worker containers: ``python -m workers.health`` exits 0 when this container's
worker has loaded its models (the ready marker names a live process) and Redis answers PING.

Exit codes: 0 healthy, 1 models not loaded, 2 Redis unreachable. One line on stdout says why.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workers.settings import Settings


def models_loaded(ready_file: str) -> tuple[bool, str]:
    path = Path(ready_file)
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False, f"models not loaded (no ready marker at {ready_file})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"models not loaded (ready marker names process {pid}, which is gone)"
    except PermissionError:
        pass  # exists, owned by another user
    return True, f"models loaded in process {pid}"


def redis_reachable(settings: Settings, timeout: float = 2.0) -> tuple[bool, str]:
    """PING with the workers' own client settings (URL, password, TLS files and verification)."""
    from workers.connections import new_client

    try:
        new_client(settings, socket_connect_timeout=timeout, socket_timeout=timeout).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return False, f"Redis unreachable ({type(exc).__name__}: {str(exc)[:160]})"
    return True, "Redis reachable"


def main() -> int:
    s = Settings.from_env()
    ok, why = models_loaded(s.ready_file)
    if not ok:
        print(why)
        return 1
    ok_redis, why_redis = redis_reachable(s)
    if not ok_redis:
        print(why_redis)
        return 2
    print(f"healthy: {why}; {why_redis}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
