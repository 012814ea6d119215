"""Settings of the API façade (environment prefix ``RAY_RUNTIME_API_``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ray_runtime.models.api import StreamLimits

__all__ = ["AglSettings", "ApiSettings", "StreamLimits"]


class AglSettings(BaseModel):
    """Agent Lightning 1.0's routes and its LLM proxy's rewrite (that server's ``default_proxy``)."""

    prefix: str = Field(default="/agl", pattern=r"^(/[A-Za-z0-9_.-]+)+$", description="Where its routes are served.")
    model_name: str = Field(default="Qwen/Qwen2.5-7B-Instruct", description="The model the proxy serves.")
    train_temperature: float = 1.0
    val_temperature: float = 0.7
    include_log_probs: bool = Field(default=True, description="Ask for log-probabilities in training.")
    include_routed_experts: bool = Field(default=False, description="Ask for MoE routing arrays in training.")
    upstream_timeout_s: float = Field(default=300.0, gt=0, description="One model server call's timeout.")


class ApiSettings(BaseSettings):
    """Where the façade listens, what it talks to, and its limits."""

    model_config = SettingsConfigDict(env_prefix="RAY_RUNTIME_API_", extra="ignore", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    ray_address: str | None = Field(default=None, description="Ray address (default: RAY_ADDRESS or auto).")
    dashboard_url: str | None = Field(default=None, description="Ray dashboard (default: the cluster's own).")
    coordinator_name: str = Field(default="coordinator", description="The coordinator actor to use.")
    public_url: str | None = Field(
        default=None,
        description="This façade's URL as the cluster reaches it, announced to session hosts (their turns' model "
        "proxy); `ray-runtime api` sets it from its bind (a wildcard bind: this node's address).",
    )
    plugins_dir: Path = Path("plugins")
    legacy_queue: str = Field(default="rollouts", description="Queue behind the Agent Lightning legacy routes.")
    synapse_prefix: str = Field(
        default="/synapse",
        pattern=r"^(/[A-Za-z0-9_.-]+)+$",
        description="Where synapse-sdk's AgentClient finds its agent server's routes.",
    )
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
    running_job_cache_s: float = Field(
        default=0.5,
        ge=0,
        description="How long a running job's details and run record are reused: a burst of reads costs one "
        "dashboard and one coordinator call (progress is at most this stale; changes made here clear it).",
    )
    job_list_cache_s: float = Field(
        default=1.0, ge=0, description="How long Ray's job list is reused (cleared by changes made here)."
    )
    audit_log: Path | None = Field(default=None, description="JSON-lines audit file (default: storage/audit.jsonl).")
    stream_limits: StreamLimits = Field(default_factory=StreamLimits)
    agl: AglSettings = Field(default_factory=AglSettings, description="RAY_RUNTIME_API_AGL__<FIELD>.")

    def loopback(self) -> bool:
        """Whether the façade binds to this machine only (the condition for dev mode)."""
        if self.host in ("localhost", ""):
            return self.host == "localhost"
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
