"""The API façade: one FastAPI app over Ray's job, state and Serve APIs and the coordinator."""

from ray_runtime.api.app import create_app
from ray_runtime.api.settings import ApiSettings, StreamLimits

__all__ = ["ApiSettings", "StreamLimits", "create_app"]
