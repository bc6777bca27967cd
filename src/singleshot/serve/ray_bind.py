"""Ray Serve's own listeners on the address ``serve --engine ray --host`` names.

Ray Serve 2.60 binds its gRPC proxy and each replica's internal gRPC server to ``[::]`` (every
interface), with no option for it. For a local Ray instance that ``serve --engine ray`` starts,
:func:`setup` runs in every Ray worker process (Ray's ``worker_process_setup_hook``) and makes
those two binds use :data:`ENV`'s address instead. Ray's core processes (GCS, raylet, the
dashboard and runtime-env agents, core workers) bind every interface in their C++ code with no
setting: those are Ray's, said in the README's production checklist.
"""

from __future__ import annotations

import os

ENV = "SINGLESHOT_RAY_BIND"
HOOK = f"{__name__}.setup"


def runtime_env(host: str) -> dict:
    """The runtime environment of a local instance whose Serve listeners bind ``host``."""
    return {"worker_process_setup_hook": HOOK, "env_vars": {ENV: host}}


def rebind(address: str, host: str) -> str:
    """``[::]:PORT`` -> ``host:PORT`` (other addresses as they are)."""
    if not address.startswith("[::]:"):
        return address
    port = address.rsplit(":", 1)[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def setup() -> None:
    host = os.environ.get(ENV)
    if not host or host in ("0.0.0.0", "::"):
        return
    try:
        from ray.serve._private import default_impl, replica
    except ImportError:  # not a Serve worker's Ray
        return
    add_address = default_impl.add_grpc_address  # the gRPC proxy's bind (looked up per call)
    default_impl.add_grpc_address = lambda server, address: add_address(
        server, rebind(address, host))
    add_port = replica.add_port_to_grpc_server  # each replica's internal gRPC server
    replica.add_port_to_grpc_server = lambda server, address: add_port(
        server, rebind(address, host))
