"""The façade as a Ray Serve application: ``import_path: ray_runtime.api.serve_app:build``.

``args`` are ``ApiSettings`` fields (``plugins_dir``, ``legacy_queue``, ...) plus ``num_replicas``. The app is built
on each replica (nothing is pickled). Under Serve the proxy may listen on any address, so dev mode is off:
create an API key first (``ray-runtime keys create --tenant <t> --scope admin``).
"""

from typing import Any

from ray import serve

from ray_runtime.api.app import create_app
from ray_runtime.api.settings import ApiSettings

__all__ = ["Facade", "build"]


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
@serve.ingress()
class Facade:
    """One replica of the API façade."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = ApiSettings(**(settings or {}))

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.settings, allow_dev_mode=False)


def build(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (see the module docstring)."""
    settings = dict(args)
    replicas = int(settings.pop("num_replicas", 1))
    return Facade.options(num_replicas=replicas).bind(settings)
