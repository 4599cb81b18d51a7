"""Runs across machines: the rendezvous a run records, and `python -m lab join RUN` for the rest.

A run becomes one node of several when it is launched with `LAB_NNODES=N` (N > 1) and
`LAB_RDZV_ENDPOINT=host:port` (an address of this machine that the other nodes reach, and a free
port): it then always runs under torchrun, whatever its processes per node (`--nproc`, default
1), and its folder records the rendezvous (`rendezvous.json`: nodes, processes per node,
endpoint, join timeout), so the queue, a resume and the other nodes read the same plan. On each
other machine, with the same code and the same LAB_HOME (a shared folder: the ranks read the
run's config from it and global rank 0, wherever torchrun puts it, writes the run's record),
`python -m lab join RUN` (lab.runs.supervisor.join) starts that node's ranks. A node that is
not joined by all the others within the join timeout (`LAB_JOIN_TIMEOUT`, default 300 s) stops
with a message naming the endpoint; node 0 then records the run failed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RDZV_NAME = "rendezvous.json"  # in the run folder
JOIN_TIMEOUT_S = 300  # s a node waits for all the others at the rendezvous; LAB_JOIN_TIMEOUT


def _positive_int(name: str, text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r} must be a whole number >= 1")
    return int(text)


def nnodes_from_env() -> int:
    """$LAB_NNODES (machines taking part in a run), 1 when unset; ValueError when not a count."""
    return _positive_int("LAB_NNODES", os.environ.get("LAB_NNODES") or "1")


def join_timeout_from_env() -> int:
    """$LAB_JOIN_TIMEOUT in seconds, `JOIN_TIMEOUT_S` when unset."""
    return _positive_int("LAB_JOIN_TIMEOUT", os.environ.get("LAB_JOIN_TIMEOUT")
                         or str(JOIN_TIMEOUT_S))


def check_endpoint(endpoint: str) -> str:
    """'host:port' with a port in 1..65535, else ValueError saying what is expected."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"LAB_RDZV_ENDPOINT={endpoint!r} is not host:port; give an address of "
                         "node 0 that the other machines reach and a free port, e.g. "
                         "10.0.0.5:29400")
    return endpoint


def plan(nproc: int) -> dict[str, Any] | None:
    """The rendezvous of a run launched now with `nproc` processes per node, from the
    environment: None on one machine; ValueError for LAB_NNODES > 1 without an endpoint."""
    nnodes = nnodes_from_env()
    if nnodes == 1:
        return None
    endpoint = os.environ.get("LAB_RDZV_ENDPOINT")
    if not endpoint:
        raise ValueError(f"LAB_NNODES={nnodes} needs LAB_RDZV_ENDPOINT=host:port: an address of "
                         "this machine that the other nodes reach, and a free port")
    return {"nnodes": nnodes, "nproc_per_node": nproc, "endpoint": check_endpoint(endpoint),
            "join_timeout": join_timeout_from_env()}


def record(run_dir: str | os.PathLike, rdzv: dict[str, Any]) -> None:
    from core.training.checkpoint import write_json

    write_json(Path(run_dir) / RDZV_NAME, rdzv)


def read(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's recorded rendezvous, or None (one machine, or no such folder here)."""
    try:
        data = json.loads((Path(run_dir) / RDZV_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("nnodes", 1) > 1 else None


def torchrun_args(run_id: str, rdzv: dict[str, Any], worker: str) -> list[str]:
    """torchrun's rendezvous arguments for one node of a multi-node run (any node)."""
    return ["--nnodes", str(rdzv["nnodes"]), "--nproc-per-node", str(rdzv["nproc_per_node"]),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv["endpoint"], "--rdzv-id", run_id,
            "--rdzv-conf", f"join_timeout={int(rdzv.get('join_timeout', JOIN_TIMEOUT_S))}"]


def not_joined(run_id: str, rdzv: dict[str, Any]) -> str:
    """What to say when the rendezvous timed out."""
    return (f"the {rdzv['nnodes']} nodes of run {run_id} did not all meet at the rendezvous "
            f"{rdzv['endpoint']} within {rdzv.get('join_timeout', JOIN_TIMEOUT_S)} s: start "
            f"it on node 0 (LAB_NNODES={rdzv['nnodes']} LAB_RDZV_ENDPOINT={rdzv['endpoint']} "
            f"python -m lab train ...) and run `python -m lab join {run_id}` on each other "
            f"node; check that they reach {rdzv['endpoint']} (firewall, address)")
