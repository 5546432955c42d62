"""Health check for worker containers: ``python -m workers.health`` exits 0 when this container's
worker has loaded its models (the ready marker names a live process) and Redis answers PING.

Exit codes: 0 healthy, 1 models not loaded, 2 Redis unreachable. One line on stdout says why.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


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


def redis_reachable(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    import redis

    from workers.state import redis_py_url

    try:
        redis.Redis.from_url(redis_py_url(url), socket_connect_timeout=timeout, socket_timeout=timeout).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return False, f"Redis unreachable ({type(exc).__name__})"
    return True, "Redis reachable"


def main() -> int:
    from workers.settings import Settings

    s = Settings.from_env()
    ok, why = models_loaded(s.ready_file)
    if not ok:
        print(why)
        return 1
    ok_redis, why_redis = redis_reachable(s.redis_url)
    if not ok_redis:
        print(why_redis)
        return 2
    print(f"healthy: {why}; {why_redis}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
