"""A real Redis Cluster for the tests: primaries and replicas on free ports, owned by us.

:class:`TestCluster` starts the nodes (each in its own temp dir, its cluster bus port
chosen too: port + 10000 may be taken or past 65535), joins them with ``CLUSTER MEET``,
gives each primary a third of the slots, attaches the replicas and waits until every node
agrees. It also does to the cluster what the tests need done: move slots the way
``redis-cli --cluster reshard`` does (``SETSLOT IMPORTING/MIGRATING``, ``MIGRATE``,
``SETSLOT NODE``), a graceful ``CLUSTER FAILOVER``, ``kill -9`` of a primary.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from tests.servers import Server, free_port

SLOTS = 16384


@dataclass
class Node(Server):
    """One cluster node: a server on its own port, cluster bus port and directory."""

    node_timeout_ms: int = 1000
    bus_port: int = field(default_factory=free_port)
    node_id: str = ""

    def arguments(self) -> list[str]:
        return [
            *super().arguments(),
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica whose link broke long ago still takes over: the tests kill primaries.
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip

    def new_ports(self) -> None:
        self.port, self.bus_port = free_port(), free_port()

    def ready(self) -> None:
        with self.client(socket_connect_timeout=0.5) as client:
            client.ping()
            self.node_id = client.execute_command("CLUSTER", "MYID").decode()


class TestCluster:
    """``primaries`` primaries with ``replicas`` replicas each, started by :meth:`start`."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        binary: str,
        kind: str,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        self.kind = kind
        self.nodes = [
            Node(f"{kind}-cluster-{index}", binary, node_timeout_ms=node_timeout_ms)
            for index in range(primaries * (1 + replicas))
        ]
        taken: set[int] = set()
        for node in self.nodes:  # no two ports of one cluster alike
            while node.port in taken or node.bus_port in taken or node.port == node.bus_port:
                node.port, node.bus_port = free_port(), free_port()
            taken.update((node.port, node.bus_port))
        self.initial_primaries = self.nodes[:primaries]
        self.replicas_per_primary = replicas

    # -- life --------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> TestCluster:
        try:
            for node in self.nodes:
                node.start()
            first = self.nodes[0]
            for node in self.nodes[1:]:
                first.command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
            count = len(self.initial_primaries)
            for index, node in enumerate(self.initial_primaries):
                low, high = index * SLOTS // count, (index + 1) * SLOTS // count - 1
                node.command("CLUSTER", "ADDSLOTSRANGE", low, high)
            self._wait(lambda: all(len(self._known(n)) == len(self.nodes) for n in self.nodes),
                       timeout, "every node to know every other")  # fmt: skip
            for index, node in enumerate(self.nodes[count:]):
                primary = self.initial_primaries[index % count]
                node.command("CLUSTER", "REPLICATE", primary.node_id)
            self.wait_healthy(timeout)
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()

    @property
    def startup_url(self) -> str:
        """One running node's URL: what a project's settings name (any node will do)."""
        return f"redis://127.0.0.1:{self.running_node().port}/0"

    def running_node(self) -> Node:
        return next(node for node in self.nodes if node.running)

    # -- what the nodes say ------------------------------------------------------------

    def _known(self, node: Node) -> list[str]:
        return node.command("CLUSTER", "NODES").decode().strip().splitlines()

    def view(self, node: Node | None = None) -> dict[str, dict]:
        """``{node id: {"address", "flags", "primary", "slots"}}`` as ``node`` sees it."""
        node = node or self.running_node()
        out = {}
        for line in self._known(node):
            parts = line.split()
            out[parts[0]] = {
                "address": parts[1].split("@")[0],
                "flags": set(parts[2].split(",")),
                "primary": None if parts[3] == "-" else parts[3],
                "slots": [p for p in parts[8:] if not p.startswith("[")],
            }
        return out

    def by_id(self, node_id: str) -> Node:
        return next(node for node in self.nodes if node.node_id == node_id)

    def primaries(self) -> list[Node]:
        """The nodes that are primaries with slots now (as a running node sees it)."""
        view = self.view()
        return [
            self.by_id(nid)
            for nid, facts in view.items()
            if "master" in facts["flags"] and "fail" not in facts["flags"] and facts["slots"]
        ]

    def owner(self, slot: int) -> Node:
        [node] = [
            node
            for node in self.primaries()
            if any(_in_range(slot, spec) for spec in self.view()[node.node_id]["slots"])
        ]
        return node

    def replica_of(self, primary: Node) -> Node:
        view = self.view()
        return next(
            self.by_id(nid)
            for nid, facts in view.items()
            if facts["primary"] == primary.node_id and "fail" not in facts["flags"]
        )

    def wait_healthy(self, timeout: float = 30) -> None:
        """Until every running node says ok, agrees on the slots and sees its replicas."""
        wanted = len(self.initial_primaries)

        def healthy() -> bool:
            views = []
            for node in self.nodes:
                if not node.running:
                    continue
                info = node.command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
                view = self.view(node)
                if any(
                    "fail" in f["flags"] or "fail?" in f["flags"]
                    for f in view.values()
                    if self.by_id_or_none(f) is not None and self.by_id_or_none(f).running
                ):
                    return False  # fmt: skip
                primaries = {
                    nid for nid, f in view.items() if "master" in f["flags"] and f["slots"]
                }
                replicas = [f["primary"] for f in view.values() if "slave" in f["flags"]
                            and self.by_id_or_none(f) is not None and self.by_id_or_none(f).running]  # fmt: skip
                if len(primaries) != wanted or (
                    self.replicas_per_primary and sorted(set(replicas)) != sorted(primaries)
                ):
                    return False
                views.append(sorted((nid, tuple(f["slots"])) for nid, f in view.items()
                                    if "master" in f["flags"] and f["slots"]))  # fmt: skip
            return all(v == views[0] for v in views)

        self._wait(healthy, timeout, "the cluster to be healthy")

    def role(self, node: Node) -> str:
        with node.client() as client:
            return str(client.info("replication")["role"])

    def by_id_or_none(self, facts: dict) -> Node | None:
        address = facts["address"]
        return next((node for node in self.nodes if node.address == address), None)

    def _wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n.name}\n{n.log()[-800:]}" for n in self.nodes)
                raise RuntimeError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.05)

    # -- doing things to it ------------------------------------------------------------

    def move_slots(self, slots: Iterable[int], source: Node, target: Node, pause=None) -> int:
        """Move ``slots`` from ``source`` to ``target`` as ``redis-cli --cluster reshard``
        does, one slot at a time; return how many keys moved. ``pause(slot)`` runs while a
        slot is half-migrated (some keys moved, some not)."""
        moved = 0
        src, dst = source.client(), target.client()
        others = [node.client() for node in self.primaries() if node not in (source, target)]
        try:
            for slot in slots:
                dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
                src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
                first = True
                while True:
                    keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
                    if not keys:
                        break
                    src.execute_command(
                        "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                    )
                    moved += len(keys)
                    if first and pause is not None:
                        pause(slot)
                    first = False
                # The target first, as redis-cli does; the others learn it by gossip too.
                for client in (dst, src, *others):
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        finally:
            for client in (src, dst, *others):
                client.close()
        return moved

    def failover(self, replica: Node, timeout: float = 30) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it takes over, with no write lost."""
        replica.command("CLUSTER", "FAILOVER")
        self._wait(lambda: self.role(replica) == "master", timeout, f"{replica.name} to take over")
        self.wait_healthy(timeout)


def _in_range(slot: int, spec: str) -> bool:
    low, _, high = spec.partition("-")
    return int(low) <= slot <= int(high or low)
