"""Settings of the API façade (environment prefix ``RAY_RUNTIME_API_``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings", "StreamLimits"]


class StreamLimits(BaseSettings):
    """Caps on one log stream; reaching one ends the stream with an explicit ``limit`` frame."""

    model_config = SettingsConfigDict(env_prefix="RAY_RUNTIME_STREAM_", extra="ignore")

    max_lines: int = Field(default=1_000_000, ge=1)
    max_bytes: int = Field(default=256 * 2**20, ge=1)
    max_messages: int = Field(default=100_000, ge=1)
    max_message_size: int = Field(default=2**20, ge=1, description="Bytes of log data in one frame.")

    def narrowed(self, **requested: int | None) -> StreamLimits:
        """These limits, lowered (never raised) by what a client asked for."""
        values = self.model_dump()
        for name, value in requested.items():
            if value is not None:
                values[name] = min(values[name], value)
        return StreamLimits(**values)


class ApiSettings(BaseSettings):
    """Where the façade listens, what it talks to, and its limits."""

    model_config = SettingsConfigDict(env_prefix="RAY_RUNTIME_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    ray_address: str | None = Field(default=None, description="Ray address (default: RAY_ADDRESS or auto).")
    dashboard_url: str | None = Field(default=None, description="Ray dashboard (default: the cluster's own).")
    coordinator_name: str = Field(default="coordinator", description="The coordinator actor to use.")
    plugins_dir: Path = Path("plugins")
    legacy_queue: str = Field(default="rollouts", description="Queue behind the Agent Lightning legacy routes.")
    legacy_lease_s: float = Field(
        default=300.0, gt=0, description="Lease of a legacy task (its client never heartbeats)."
    )
    max_body_bytes: int = Field(default=8 * 2**20, gt=0)
    log_range_default: int = Field(default=64 * 1024, gt=0, description="Bytes of a log range when no limit is given.")
    log_range_max: int = Field(default=8 * 2**20, gt=0)
    log_poll_interval_s: float = Field(default=0.025, gt=0, description="State API log poll interval.")
    log_heartbeat_s: float = Field(default=5.0, gt=0, description="Idle time before a heartbeat frame.")
    keys_cache_s: float = Field(default=5.0, ge=0, description="How long a looked-up API key is trusted.")
    finished_job_cache_s: float = Field(
        default=30.0, ge=0, description="How long a finished job's details are served from memory (they are final)."
    )
    job_list_cache_s: float = Field(
        default=1.0, ge=0, description="How long Ray's job list is reused (cleared by changes made here)."
    )
    audit_log: Path | None = Field(default=None, description="JSON-lines audit file (default: storage/audit.jsonl).")
    stream_limits: StreamLimits = Field(default_factory=StreamLimits)

    def loopback(self) -> bool:
        """Whether the façade binds to this machine only (the condition for dev mode)."""
        if self.host in ("localhost", ""):
            return self.host == "localhost"
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
