"""The minimal plugin: one typed action."""

import os

from pydantic import BaseModel, Field

from ray_runtime import Context


class Greeting(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    excited: bool = False
    times: int = Field(default=1, ge=1, le=10)


class Reply(BaseModel):
    message: str
    mode: str


def greet(params: Greeting, ctx: Context) -> Reply:
    """Say hello."""
    salutation = os.environ.get("HELLO_SALUTATION", "Hi")
    mark = "!" if params.excited else "."
    lines = [f"{salutation}, {params.name}{mark}" for _ in range(params.times)]
    ctx.progress(params.times, params.times, "greeted")
    return Reply(message=" ".join(lines), mode=ctx.mode)
