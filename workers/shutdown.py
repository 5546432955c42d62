"""Graceful stop for the long-running helper processes (inbox bridge, loaders): SIGTERM from
Kubernetes or Ctrl-C sets a flag that their loops check between reads, so an entry being written
is finished and acknowledged before the process exits."""

from __future__ import annotations

import signal


class StopFlag:
    def __init__(self) -> None:
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def __call__(self) -> bool:
        return self.stopping
