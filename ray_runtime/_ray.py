"""Small facts about the Ray cluster this process is connected to, read the way Ray's own tools read them."""

from __future__ import annotations

import ray

__all__ = ["dashboard_url"]


def dashboard_url() -> str:
    """The dashboard's URL, as the dashboard registered it in GCS (correct in drivers, actors and replicas)."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    if not ray.is_initialized():
        ray.init()
    address = _internal_kv_get(ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD)
    url = address.decode() if address else ray._private.worker.get_dashboard_url()
    return url if "://" in url else f"http://{url}"
