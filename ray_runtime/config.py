"""Settings: the one place for addresses, paths and limits (environment prefix ``RAY_RUNTIME_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BOUND_TENANT_ENV", "NAMESPACE", "CoordinatorSettings", "Settings"]

NAMESPACE = "ray_runtime"
"""The Ray namespace of ray_runtime's actors by default: the coordinator (``connect(namespace=...)`` picks another,
and its session hosts follow it) and the cluster's Serve manager."""

BOUND_TENANT_ENV = "RAY_RUNTIME_BOUND_TENANT"
"""Set in the runtime_env of code ray_runtime starts for a tenant (plugin jobs, workers, Serve apps, session hosts):
its coordinator handle then acts for that tenant only. A guard against mistakes, not a security boundary."""


class CoordinatorSettings(BaseSettings):
    """How the coordinator actor stores, leases, retries and retains.

    Read in the actor's own process (on the head node), so ``RAY_RUNTIME_STORAGE`` is the head's.
    """

    model_config = SettingsConfigDict(env_prefix="RAY_RUNTIME_", extra="ignore")

    storage: Path = Field(default=Path("~/.ray_runtime"), description="Directory for journals.")
    journal_url: str | None = Field(
        default=None,
        pattern="^postgres(ql)?://",
        repr=False,  # it may hold a password
        description="postgresql://...: keep the coordinator's state in PostgreSQL instead of files under storage.",
    )
    journal_synchronous: str = Field(
        default="NORMAL",
        pattern="^(NORMAL|FULL)$",
        description="File journal: NORMAL survives process kills, FULL also power loss. PostgreSQL commits with "
        "synchronous_commit = on either way (an acknowledged write survives a crash of PostgreSQL).",
    )
    max_payload_bytes: int = Field(default=1 << 20, gt=0, description="Cap on input/result/metadata JSON.")
    default_lease_s: float = Field(default=30.0, gt=0)
    max_lease_s: float = Field(default=24 * 3600.0, gt=0)
    retry_backoff_s: float = Field(default=1.0, ge=0, description="Backoff before attempt 2; doubles after.")
    retry_backoff_max_s: float = Field(default=60.0, ge=0)
    sweep_interval_s: float = Field(default=0.1, gt=0, description="How often expired leases are swept.")
    checkpoint_interval_s: float = Field(default=1.0, gt=0, description="How often the journal log is folded.")
    finished_retention: int = Field(default=100_000, ge=0, description="Finished tasks kept for get/query.")
    finished_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    resources_keep: int = Field(default=20, ge=1, description="Unreferenced resource versions kept.")
    worker_ttl_s: float = Field(default=600.0, gt=0, description="Idle workers forgotten after this long.")
    runs_retention: int = Field(default=10_000, ge=1, description="Finished plugin runs kept.")
    session_retention_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="Closed sessions (and their snapshots) kept this long."
    )
    rollout_retention_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="Ended Agent Lightning rollouts nobody deleted kept this long."
    )

    def journal_path(self, name: str) -> Path:
        """Where the coordinator called ``name`` keeps its journal."""
        return self.storage.expanduser() / "coordinator" / f"{name}.sqlite3"

    def snapshot_dir(self, name: str) -> Path:
        """Where the coordinator called ``name`` keeps session snapshots."""
        return self.storage.expanduser() / "coordinator" / f"{name}-sessions"


class Settings(BaseSettings):
    """Driver-side settings: where the cluster and the coordinator are."""

    model_config = SettingsConfigDict(env_prefix="RAY_RUNTIME_", extra="ignore")

    ray_address: str | None = Field(default=None, description="Ray address; None joins or starts as ray.init does.")
    namespace: str = NAMESPACE
    coordinator_name: str = "coordinator"
    tenant: str = "default"
    plugins_dir: Path = Field(default=Path("plugins"), description="Where session templates (plugins) are found.")
    call_timeout_s: float = Field(default=60.0, gt=0, description="Deadline for one coordinator call.")
    journal_url: str | None = Field(
        default=None,
        repr=False,
        description="The coordinator's PostgreSQL journal, if any: then it may run on any node.",
    )
    coordinator_node: str | None = Field(
        default=None, description="With an external journal: a node the coordinator prefers (soft affinity)."
    )
    coordinator_resource: str | None = Field(
        default=None, description="With an external journal: a custom resource that nodes able to run it offer."
    )
    placement_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a wait for Ray to place workers, describe/validate tasks or Serve replicas may take.",
    )
    turn_timeout_s: float = Field(
        default=660.0, gt=0, description="Deadline for one call into a session host (a turn runs the agent)."
    )
