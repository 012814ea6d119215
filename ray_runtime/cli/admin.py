"""``ray-runtime api`` and ``keys``: run the façade, manage its API keys (as a Ray driver on the head)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ray_runtime.cli._common import (
    JsonFlag,
    RayAddress,
    ago,
    connect_ray,
    console,
    handles_errors,
    print_json,
    show,
    table,
)

admin_app = typer.Typer()  # `api`, registered at the top level
keys_app = typer.Typer(help="API keys of the façade (stored hashed in the coordinator).", no_args_is_help=True)


@admin_app.command("api")
@handles_errors
def api(
    host: Annotated[str, typer.Option(envvar="RAY_RUNTIME_API_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RAY_RUNTIME_API_PORT", help="Port to bind.")] = 8080,
    address: RayAddress = None,
    dashboard: Annotated[str | None, typer.Option(help="Ray dashboard URL (default: the cluster's).")] = None,
    plugins_dir: Annotated[Path, typer.Option(help="Plugins the façade can submit and serve.")] = Path("plugins"),
    coordinator: Annotated[str, typer.Option(help="Coordinator actor name.")] = "coordinator",
    public_url: Annotated[
        str | None,
        typer.Option(
            envvar="RAY_RUNTIME_API_PUBLIC_URL",
            help="This façade's URL as the cluster reaches it (default: from --host and --port).",
        ),
    ] = None,
) -> None:
    """Run the API façade under uvicorn. Without API keys it serves only on loopback (dev mode)."""
    import uvicorn

    from ray_runtime.api import ApiSettings, create_app
    from ray_runtime.api.services import misplaced_state
    from ray_runtime.coordinator import connect
    from ray_runtime.errors import InvalidArgumentError
    from ray_runtime.keys import KEYS_NAMESPACE

    settings = ApiSettings(
        host=host,
        port=port,
        ray_address=address,
        dashboard_url=dashboard,
        plugins_dir=plugins_dir,
        coordinator_name=coordinator,
        public_url=public_url or _reachable_url(host, port),
    )
    connect_ray(address)
    coord = connect(name=coordinator)
    problem = misplaced_state(coord.info()["journal"], coordinator)
    if problem is not None:
        raise InvalidArgumentError("RAY_RUNTIME_JOURNAL_URL", problem)
    keys = coord.kv.items(KEYS_NAMESPACE)
    if not any(record.get("revoked_at") is None for record in keys.values()) and not settings.loopback():
        raise InvalidArgumentError(
            "host",
            f"no API keys exist, so the façade serves only on loopback; create one with `ray-runtime keys create "
            f"--tenant <tenant> --scope admin`, or bind to 127.0.0.1 (got {host})",
        )
    console.print(f"ray_runtime API on http://{host}:{port} (OpenAPI at /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", ws="auto")


def _reachable_url(host: str, port: int) -> str:
    """Where the cluster reaches a façade bound to ``host``: a wildcard bind is reached at this node's address."""
    if host in ("0.0.0.0", "::", ""):
        from ray.util import get_node_ip_address

        host = get_node_ip_address()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@keys_app.command("create")
@handles_errors
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    scope: Annotated[str, typer.Option(help="read, submit or admin.")] = "submit",
    name: Annotated[str, typer.Option(help="A note to tell keys apart.")] = "",
    output: Annotated[
        Path | None, typer.Option(help="Write the key to this file (mode 0600) instead of printing it.")
    ] = None,
    if_none: Annotated[
        bool, typer.Option("--if-none", help="Only if the tenant has no live key of this scope (for bootstrapping).")
    ] = False,
    cluster_admin: Annotated[
        bool, typer.Option("--cluster-admin", help="Sees what belongs to no tenant, sets tenant limits, grants.")
    ] = False,
    run_code: Annotated[
        bool, typer.Option("--run-code", help="May submit arbitrary code (raw entrypoints, packages, import paths).")
    ] = False,
    address: RayAddress = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; it is shown (or written) this once and stored only as a hash."""
    from ray_runtime.checks import check_name
    from ray_runtime.coordinator import connect
    from ray_runtime.errors import InvalidArgumentError
    from ray_runtime.keys import KEYS_NAMESPACE, StoredKey, new_key
    from ray_runtime.models.api import Scope

    check_name("tenant", tenant)
    if scope not in {s.value for s in Scope}:
        raise InvalidArgumentError("scope", f"must be read, submit or admin; got {scope!r}")
    connect_ray(address)
    kv = connect().kv
    if if_none:
        live = [StoredKey.model_validate(raw) for raw in kv.items(KEYS_NAMESPACE).values()]
        if any(k.tenant == tenant and k.scope.value == scope and k.revoked_at is None for k in live):
            console.print(f"tenant {tenant!r} already has a live {scope} key; none created")
            return
    key, record = new_key(tenant, Scope(scope), name, cluster_admin=cluster_admin, run_code=run_code)
    kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"), if_absent=True)
    if output is not None:
        output = output.expanduser()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.touch(mode=0o600)
        output.chmod(0o600)
        output.write_text(key + "\n")
        console.print(f"key {record.key_id} for tenant {tenant!r}, scope {scope}, written to {output}")
        return
    if as_json:
        print_json({"key": key, "info": record.info().model_dump(mode="json")})
        return
    console.print(f"key {record.key_id} for tenant {tenant!r}, scope {scope}. Store it now; it is not shown again:")
    typer.echo(key)


@keys_app.command("list")
@handles_errors
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    address: RayAddress = None,
    as_json: JsonFlag = False,
) -> None:
    """List API keys (ids, tenants, scopes; never secrets)."""
    from ray_runtime.coordinator import connect
    from ray_runtime.keys import KEYS_NAMESPACE, StoredKey

    connect_ray(address)
    keys = [StoredKey.model_validate(raw) for raw in connect().kv.items(KEYS_NAMESPACE).values()]
    keys = [k.info() for k in keys if tenant is None or k.tenant == tenant]
    rows = [
        [
            k.key_id,
            k.tenant,
            k.scope.value,
            ", ".join(g for g, on in (("cluster admin", k.cluster_admin), ("run code", k.run_code)) if on),
            k.name,
            ago(k.created_at),
            ago(k.revoked_at),
        ]
        for k in keys
    ]
    columns = ["key id", "tenant", "scope", "grants", "name", "created", "revoked"]
    show(keys, as_json, lambda: table("API keys", columns, rows))


@keys_app.command("revoke")
@handles_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (rrk_<id>_...).")], address: RayAddress = None
) -> None:
    """Revoke an API key (the façade stops accepting it within its key cache time)."""
    import time

    from ray_runtime.coordinator import connect
    from ray_runtime.errors import NotFoundError
    from ray_runtime.keys import KEYS_NAMESPACE, StoredKey

    connect_ray(address)
    coord = connect()
    raw = coord.kv.get(KEYS_NAMESPACE, key_id)
    if raw is None:
        raise NotFoundError(f"no API key {key_id!r}")
    record = StoredKey.model_validate(raw)
    coord.kv.put(KEYS_NAMESPACE, key_id, record.model_copy(update={"revoked_at": time.time()}).model_dump(mode="json"))
    console.print(f"revoked {key_id}")
