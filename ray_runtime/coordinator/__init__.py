"""The coordinator: durable task queues and versioned resources on one named, detached Ray actor."""

from ray_runtime.coordinator.handle import (
    AsyncCoordinator,
    AsyncResources,
    Coordinator,
    Resources,
    aconnect,
    connect,
)

__all__ = ["AsyncCoordinator", "AsyncResources", "Coordinator", "Resources", "aconnect", "connect"]
