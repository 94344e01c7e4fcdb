"""Jittered exponential backoff for transient failures: the worker stays up and
retries; operators see the failures in logs and metrics."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_secs: float = 0.5
    max_secs: float = 30.0
    attempt: int = field(default=0, init=False)

    def next_delay_secs(self) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(max, initial·2^n)]."""
        ceiling = min(self.max_secs, self.initial_secs * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay_secs())

    def reset(self) -> None:
        self.attempt = 0
