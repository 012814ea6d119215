"""A rollout worker in the style of Agent Lightning: prompt template and LLM settings come from the
coordinator's resources, a deterministic local policy stands in for the LLM, the result carries a reward.

The policy is honest arithmetic, except that a "hot" sampling temperature (>= 0.5) makes it slip on
multiplications, deterministically per question: publishing cooler LLM settings raises the reward.
"""

import ast
import hashlib
import operator

from pydantic import BaseModel, Field

from ray_runtime import LLM, Context, PromptTemplate

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class Problem(BaseModel):
    question: str = Field(min_length=1, max_length=200, description="An arithmetic expression, e.g. '3 * (4 + 5)'.")
    expected: float | None = None


class Rollout(BaseModel):
    prompt: str
    response: str
    answer: float
    reward: float | None
    model: str
    temperature: float
    resources_id: str | None


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    raise ValueError("only numbers, + - * / and parentheses are allowed")


def _policy(question: str, temperature: float) -> float:
    answer = _evaluate(ast.parse(question, mode="eval"))
    slips = temperature >= 0.5 and "*" in question
    if slips and int(hashlib.sha256(question.encode()).hexdigest(), 16) % 2 == 0:
        answer += 1  # the hot policy's deterministic mistake
    return answer


def solve(params: Problem, ctx: Context) -> Rollout:
    """Answer one problem with the current resources and score it against the expected answer."""
    resources = ctx.resources
    llm = resources.get("llm")
    template = resources.get("prompt")
    model = llm.model if isinstance(llm, LLM) else "local-policy"
    temperature = float(llm.sampling_parameters.get("temperature", 0.0)) if isinstance(llm, LLM) else 0.0
    prompt = template.format(question=params.question) if isinstance(template, PromptTemplate) else params.question
    answer = _policy(params.question, temperature)
    reward = None if params.expected is None else float(abs(answer - params.expected) < 1e-9)
    update = ctx.resources_update
    return Rollout(
        prompt=prompt,
        response=f"The answer is {answer:g}.",
        answer=answer,
        reward=reward,
        model=model,
        temperature=temperature,
        resources_id=update.resources_id if update is not None else None,
    )
