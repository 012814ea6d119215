"""A deterministic chat agent: it remembers the conversation, calls a calculator tool for arithmetic, streams its
answer token by token and counts tokens. No network, no model: the same input always gives the same answer.

Its temperature comes from the tenant's resources (an ``llm`` resource's ``sampling_parameters.temperature``), else
from its config; it only changes how the agent signs its answers, so a test can see which one it used.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Iterator

from pydantic import BaseModel, Field

from ray_runtime.sessions import SessionContext, ToolCall, ToolResult, TurnContext, TurnRequest

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_ARITHMETIC = re.compile(r"(-?\d+(?:\.\d+)?(?:\s*[-+*/]\s*-?\d+(?:\.\d+)?)+)")
_NAME = re.compile(r"\bmy name is (\w+)", re.IGNORECASE)


class ChatConfig(BaseModel):
    persona: str = Field(default="assistant", max_length=40)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_history: int = Field(default=100, ge=2, le=10_000)


def calculate(expression: str) -> float:
    """Evaluate + - * / of numbers (nothing else), safely."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not arithmetic: {expression!r}")

    result = value(ast.parse(expression, mode="eval").body)
    return int(result) if float(result).is_integer() else round(result, 6)


class ChatAgent:
    """One conversation."""

    def __init__(self, config: ChatConfig, ctx: SessionContext) -> None:
        self.config = config
        self.ctx = ctx
        self.history: list[dict[str, str]] = []

    def temperature(self) -> float:
        llm = self.ctx.resources.get("llm")
        sampling = getattr(llm, "sampling_parameters", None) or {}
        return float(sampling.get("temperature", self.config.temperature))

    def invoke(self, request: TurnRequest, ctx: TurnContext) -> Iterator[object]:
        text = (request.text or str(request.data or "")).strip()
        self.history.append({"role": "user", "text": text})
        answer = yield from self._answer(text, ctx)
        answer = f"{answer} [{self.config.persona}, t={self.temperature():g}]"
        for n, word in enumerate(answer.split(" ")):
            if ctx.cancelled:
                break
            ctx.add_tokens(1)
            yield word if n == 0 else f" {word}"
        self.history.append({"role": "assistant", "text": answer})
        self.history = self.history[-self.config.max_history :]
        return {"answer": answer, "turns": sum(1 for h in self.history if h["role"] == "user")}

    def _answer(self, text: str, ctx: TurnContext) -> Iterator[object]:
        found = _ARITHMETIC.search(text)
        if found:
            expression = found.group(1)
            yield ToolCall(call_id=f"{ctx.turn_id}-calc", name="calculator", arguments={"expression": expression})
            result = calculate(expression)
            yield ToolResult(call_id=f"{ctx.turn_id}-calc", result=result)
            return f"{expression} = {result}."
        named = _NAME.search(text)
        if named:
            return f"Nice to meet you, {named.group(1)}."
        if re.search(r"\bwhat is my name\b", text, re.IGNORECASE):
            names = [m.group(1) for h in self.history if h["role"] == "user" for m in [_NAME.search(h["text"])] if m]
            return f"Your name is {names[-1]}." if names else "You have not told me your name."
        if re.search(r"\bwhat did i say\b", text, re.IGNORECASE):
            said = [h["text"] for h in self.history[:-1] if h["role"] == "user"]
            return f"You said: {said[-1]!r}." if said else "Nothing yet."
        return f"You said {len(text.split())} words."
