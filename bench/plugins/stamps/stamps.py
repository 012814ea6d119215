"""A benchmark agent. Data {"chunks": n, "interval_s": s} yields n text chunks, each the time.time() it was yielded,
s seconds apart; the result is the count of turns. Config ``state_bytes`` gives it that much state to snapshot."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from pydantic import BaseModel, Field

from ray_runtime.sessions import SessionContext, TurnContext, TurnRequest


class StampsConfig(BaseModel):
    state_bytes: int = Field(default=0, ge=0, le=256 * 2**20)


class Stamps:
    def __init__(self, config: StampsConfig, ctx: SessionContext) -> None:
        self.turns = 0
        self.state = os.urandom(config.state_bytes)

    def invoke(self, request: TurnRequest, ctx: TurnContext) -> Iterator[str]:
        data = request.data or {}
        interval = float(data.get("interval_s", 0))
        for n in range(int(data.get("chunks", 1))):
            if n and interval:
                time.sleep(interval)
            yield f"{time.time():.6f} "
        self.turns += 1
        return {"turns": self.turns}
