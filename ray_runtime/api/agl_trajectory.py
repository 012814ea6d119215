"""What Agent Lightning 1.0 reads out of a rollout's events: the token view of a model call, triplets (token views
and reward values, one model call per distinct prompt) and the rule that keeps one copy of MoE routing arrays.

Pure functions over event data (dicts), the protocol's behaviour as its 1.0.2 server has it; no I/O.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["drop_routes", "routes_superseded", "token_view", "triplets"]

MODEL_REQUEST = "model_request"
REWARD = "reward"
ROUTES = "routed_experts"


def chosen_log_probs(choice: dict[str, Any]) -> list[float] | None:
    """The log-probabilities of the chosen tokens of one choice (chat or completions shape), or None when they are
    missing or any is not a finite number: a bad sample is dropped by the trainer, never an error here."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    if isinstance(logprobs.get("content"), list):
        values = []
        for token in logprobs["content"]:
            if not isinstance(token, dict) or "logprob" not in token:
                return None
            values.append(token["logprob"])
    elif isinstance(logprobs.get("token_logprobs"), list):
        values = list(logprobs["token_logprobs"])
    else:
        return None
    floats = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number):
            return None
        floats.append(number)
    return floats


def token_view(data: dict[str, Any]) -> dict[str, Any]:
    """A model call as a trainer reads it: prompt and response token ids, the response's log-probabilities, which
    server answered, and its routing arrays, status and error when present."""
    response = data.get("response")
    prompt: Any = []
    answer: Any = []
    log_probs = None
    if isinstance(response, dict):
        prompt = response.get("prompt_token_ids", [])
        choices = response.get("choices", [])
        if choices:
            first = choices[0]
            if not prompt:
                prompt = first.get("prompt_token_ids", [])
            answer = first.get("token_ids", [])
            log_probs = chosen_log_probs(first)
    elif isinstance(response, list):  # streamed chunks, as older gateways stored them
        answer = []
        for chunk in response:
            if not prompt and chunk.get("prompt_token_ids"):
                prompt = chunk["prompt_token_ids"]
            choices = chunk.get("choices", [])
            if choices and choices[0].get("token_ids"):
                answer.extend(choices[0]["token_ids"])
    server = data.get("server", {})
    view: dict[str, Any] = {
        "prompt_token_ids": prompt,
        "response_token_ids": answer,
        "response_log_probs": log_probs,
        "server": {"model": server.get("model"), "version": server.get("version")},
    }
    if data.get(ROUTES) is not None:
        view[ROUTES] = data[ROUTES]
    for key in ("http_status", "status"):
        if key in data:
            view[key] = data[key]
    if isinstance(response, dict) and "error" in response:
        view["error"] = response["error"]
    return view


def routes_superseded(new: dict[str, Any]) -> Any:
    """For a new model call carrying routing arrays, a rewrite of the attempt's previous model call: it loses its
    arrays when the new call repeats its prompt or continues its conversation (the new arrays cover them)."""
    if new.get(ROUTES) is None:
        return None
    prompt = token_view(new)["prompt_token_ids"]

    def rewrite(previous: dict[str, Any]) -> dict[str, Any] | None:
        if ROUTES not in previous:
            return None
        earlier = token_view(previous)
        context = earlier["prompt_token_ids"] + earlier["response_token_ids"]
        if prompt == earlier["prompt_token_ids"] or prompt[: len(context)] == context:
            return {key: value for key, value in previous.items() if key != ROUTES}
        return None

    return rewrite


def _trimmed(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    if event_type == MODEL_REQUEST:
        return token_view(data)
    if event_type == REWARD:
        return {"value": data.get("value"), **{k: data[k] for k in ("source", "reason") if k in data}}
    return data


def triplets(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Events (type, data) trimmed for training: model calls to their token views, rewards to their values, others
    as they are; of model calls with the same valid prompt only the last. Returns (index, trimmed data) of each
    kept."""
    trimmed = [(index, event_type, _trimmed(event_type, data)) for index, (event_type, data) in enumerate(events)]
    last_of: dict[tuple[int, ...], int] = {}
    kept: set[int] = set()
    for index, event_type, data in trimmed:
        if event_type != MODEL_REQUEST:
            continue
        prompt = data.get("prompt_token_ids", [])
        if not isinstance(prompt, list) or not prompt or any(type(token) is not int for token in prompt):
            kept.add(index)
        else:
            last_of[tuple(prompt)] = index
    kept.update(last_of.values())
    return [(index, data) for index, event_type, data in trimmed if event_type != MODEL_REQUEST or index in kept]


def drop_routes(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """A model call's data without its routing arrays (anything else as it is)."""
    if event_type != MODEL_REQUEST or ROUTES not in data:
        return data
    return {key: value for key, value in data.items() if key != ROUTES}
