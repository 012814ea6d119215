"""A small deterministic OpenAI-compatible model server for the Agent Lightning tests: answers carry prompt and
response token ids and log-probabilities (as vLLM's do when asked), derived from the request alone."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from ray_runtime._net import free_port

from .waiting import wait_until


def _tokens(text: str, n: int) -> list[int]:
    seed = zlib.crc32(text.encode())
    return [(seed >> (i % 24)) % 1000 + i for i in range(n)]


def model_app() -> FastAPI:
    app = FastAPI()
    app.state.calls = []

    def answer(body: dict[str, Any], text: str, chat: bool) -> dict[str, Any]:
        app.state.calls.append(body)
        prompt_ids = _tokens(text, 5)
        output_ids = _tokens(text[::-1], 3)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "token_ids": output_ids}
        reply = f"echo:{text[-20:]}"
        if chat:
            choice["message"] = {"role": "assistant", "content": reply}
            if body.get("logprobs"):
                choice["logprobs"] = {
                    "content": [{"token": str(t), "logprob": -0.5 * (i + 1)} for i, t in enumerate(output_ids)]
                }
        else:
            choice["text"] = reply
            choice["prompt_token_ids"] = prompt_ids
            if body.get("logprobs"):
                choice["logprobs"] = {"token_logprobs": [-0.25 * (i + 1) for i in range(len(output_ids))]}
        if body.get("return_routed_experts"):
            choice["routed_experts"] = [[i, i + 1] for i in range(len(prompt_ids) + len(output_ids))]
        result = {
            "id": f"cmpl-{zlib.crc32(text.encode())}",
            "object": "chat.completion" if chat else "text_completion",
            "model": body.get("model"),
            "choices": [choice],
            "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": len(output_ids), "total_tokens": 8},
        }
        if chat:
            result["prompt_token_ids"] = prompt_ids
        return result

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        text = "|".join(str(m.get("content")) for m in body.get("messages", []))
        return answer(body, text, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        return answer(body, str(body.get("prompt")), chat=False)

    return app


@contextmanager
def model_server() -> Iterator[tuple[str, FastAPI]]:
    """The server running on a free loopback port; yields its OpenAI base URL (``.../v1``) and its app."""
    app = model_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, interval_s=0.02, what="the model server to start")
    try:
        yield f"http://127.0.0.1:{port}/v1", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
