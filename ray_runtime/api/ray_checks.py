"""Input the façade hands to Ray verbatim (runtime_envs, Serve application configs), checked first with Ray's own
validators, so a caller's mistake is a typed 4xx naming the field and never a 500 from deep inside Ray."""

from __future__ import annotations

from typing import Any

from ray_runtime.errors import InvalidArgumentError, ValidationError

__all__ = ["check_runtime_env", "check_serve_application", "runs_code"]

_CODE_FIELDS = ("working_dir", "py_modules", "pip", "uv", "conda", "container", "image_uri", "py_executable")


def check_runtime_env(field: str, env: dict[str, Any] | None) -> dict[str, Any] | None:
    """``env`` if Ray accepts it as a runtime_env; else ``InvalidArgumentError`` naming the field and Ray's reason."""
    if env is None:
        return None
    from ray.runtime_env import RuntimeEnv

    try:
        RuntimeEnv(**env)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(field, str(exc).splitlines()[0][:500]) from None
    return env


def runs_code(env: dict[str, Any] | None) -> bool:
    """Whether a runtime_env brings code or packages of its own (pip, working_dir, py_modules, ...)."""
    return any(key in (env or {}) for key in _CODE_FIELDS)


def check_serve_application(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` if Ray's Serve accepts it as one application of a Serve config; else ``ValidationError``."""
    from pydantic import ValidationError as PydanticValidationError
    from ray.serve.schema import ServeApplicationSchema

    route = config.get("route_prefix")
    if route is not None and not (isinstance(route, str) and route.startswith("/")):
        raise InvalidArgumentError("route_prefix", f"must start with '/'; got {route!r}")
    check_runtime_env("runtime_env", config.get("runtime_env"))
    try:
        ServeApplicationSchema.model_validate(config)
    except PydanticValidationError as exc:
        raise ValidationError.from_pydantic("the application", exc) from None
    return config
