"""A real Sentinel deployment for the tests: one primary, two replicas, three sentinels.

Every process on a free port in its own temp dir, owned by the suite (the machine's own
Redis is never touched). Sentinels run from the same binary with ``--sentinel`` and a
generated ``sentinel.conf`` (a sentinel rewrites its config file, so each gets its own),
with ``down-after-milliseconds`` small so a killed primary is replaced in a second or two.

:class:`SentinelSet` knows the current primary after a failover (it asks the sentinels,
then checks the node's role), and does to the deployment what the tests need: a
``SENTINEL FAILOVER``, a ``kill -9`` of the primary, bringing a killed node back (the
sentinels turn it into a replica of the new primary).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.servers import Server, free_port

SERVICE = "atomicops-test"
DOWN_AFTER_MS = 500


@dataclass
class DataNode(Server):
    """A primary or a replica (``extra``: ``--replicaof``, set before it starts)."""

    def arguments(self) -> list[str]:
        # A replica (re)joining syncs at once, not after the default 5 s wait for others
        # to share the transfer.
        return [*super().arguments(), "--repl-diskless-sync-delay", "0"]


@dataclass
class SentinelNode(Server):
    """A sentinel: the same binary with ``--sentinel`` and a ``sentinel.conf`` of its own
    (``extra`` holds its lines; a sentinel rewrites the file, and a restart keeps it)."""

    def arguments(self) -> list[str]:
        conf = Path(self.workdir, "sentinel.conf")
        if not conf.exists():
            conf.write_text("\n".join([f"port {self.port}", *self.extra, ""]))
        return [self.binary, str(conf), "--sentinel", "--bind", "127.0.0.1",
                "--dir", self.workdir, "--logfile", os.path.join(self.workdir, "server.log")]  # fmt: skip

    def new_ports(self) -> None:
        self.port = free_port()
        Path(self.workdir, "sentinel.conf").unlink(missing_ok=True)


class SentinelSet:
    """A primary, ``replicas`` replicas of it, and ``sentinels`` sentinels watching it."""

    __test__ = False

    def __init__(self, binary: str, kind: str, *, replicas: int = 2, sentinels: int = 3):
        self.kind = kind
        # One name per kind: django-redis keeps its pools per LOCATION for the process,
        # so a second deployment under the same name would get the first one's pool.
        self.service = f"{SERVICE}-{kind}"
        self.nodes = [DataNode(f"{kind}-data-{i}", binary) for i in range(1 + replicas)]
        self.sentinels = [SentinelNode(f"{kind}-sentinel-{i}", binary) for i in range(sentinels)]
        ports = {p.port for p in self.nodes + self.sentinels}
        while len(ports) < len(self.nodes) + len(self.sentinels):  # free_port() twice alike
            for proc in self.nodes + self.sentinels:
                proc.port = free_port()
            ports = {p.port for p in self.nodes + self.sentinels}
        self.quorum = sentinels // 2 + 1

    # -- life --------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> SentinelSet:
        try:
            first, *others = self.nodes
            first.start()
            for node in others:
                node.extra = ("--replicaof", "127.0.0.1", str(first.port))
                node.start()
            for sentinel in self.sentinels:
                sentinel.extra = (
                    f"sentinel monitor {self.service} 127.0.0.1 {first.port} {self.quorum}",
                    f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}",
                    # How long a failed failover blocks the next one; also the time a
                    # sentinel waits before re-trying: small, the tests fail over often.
                    f"sentinel failover-timeout {self.service} 4000",
                    f"sentinel parallel-syncs {self.service} {len(others)}",
                )
                sentinel.start()
            self.wait_healthy(timeout, sentinels_met=True)
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for proc in self.sentinels + self.nodes:
            proc.remove()

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [s.pair for s in self.sentinels]

    # -- what the deployment says ------------------------------------------------------

    def role(self, node: Server) -> str:
        with node.client(socket_timeout=1) as client:
            return str(client.info("replication")["role"])

    def by_port(self, port: int) -> Server:
        return next(node for node in self.nodes if node.port == port)

    def announced_primary(self, sentinel: Server) -> Server:
        host, port = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return self.by_port(int(port))

    def primary(self) -> Server:
        """The primary every running sentinel names (and which says it is one)."""
        named = {self.announced_primary(s).port for s in self.sentinels if s.running}
        if len(named) != 1:
            raise RuntimeError(f"the sentinels disagree on the primary: {sorted(named)}")
        node = self.by_port(named.pop())
        if self.role(node) != "master":
            raise RuntimeError(f"{node.name} is named primary but is not one yet")
        return node

    def replicas(self) -> list[Server]:
        primary = self.primary()
        return [node for node in self.nodes if node is not primary and node.running]

    def wait_healthy(self, timeout: float = 30, *, sentinels_met: bool = False) -> Server:
        """Until the running sentinels agree on a primary that has every other running
        node as an online replica; with ``sentinels_met``, also until each sentinel knows
        the others (a failover needs a majority of them to elect a leader)."""

        def healthy() -> bool:
            primary = self.primary()
            with primary.client(socket_timeout=1) as client:
                online = [
                    v for k, v in client.info("replication").items()
                    if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                ]  # fmt: skip
            if len(online) != sum(node.running for node in self.nodes) - 1:
                return False
            if sentinels_met:
                for sentinel in self.sentinels:
                    with sentinel.client(socket_timeout=1) as client:
                        facts = client.sentinel_master(self.service)
                    if facts["num-other-sentinels"] < len(self.sentinels) - 1:
                        return False
            return True

        self._wait(healthy, timeout, "the sentinels to agree on a healthy primary")
        return self.primary()

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except (redis.RedisError, OSError, RuntimeError, KeyError):
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {p.name}\n{p.log()[-800:]}" for p in self.nodes + self.sentinels
                )
                raise RuntimeError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.05)

    # -- doing things to it ------------------------------------------------------------

    def failover(self, timeout: float = 30) -> tuple[Server, Server]:
        """``SENTINEL FAILOVER``: a replica is promoted, then the old primary is told to
        replicate it. Sentinel does not pause the old primary first: what it accepts in
        between is lost. Returns (old, new)."""
        old = self.primary()
        self.sentinels[0].command("SENTINEL", "FAILOVER", self.service)
        self._wait(lambda: self.primary() is not old, timeout, "a replica to be promoted")
        new = self.primary()
        self.wait_healthy(timeout)
        return old, new

    def kill_primary(self) -> Server:
        """``kill -9`` of the primary; returns it (not restarted)."""
        victim = self.primary()
        victim.kill()
        return victim

    def wait_promoted(self, old: Server, timeout: float = 30) -> Server:
        """Until the sentinels name a primary other than ``old`` that says it is one."""
        self._wait(lambda: self.primary() is not old, timeout, "a replica to be promoted")
        return self.primary()

    def bring_back(self, node: Server, timeout: float = 30) -> None:
        """Start a killed node again; the sentinels make it a replica of the primary."""
        node.start()
        self.wait_healthy(timeout)

    def empty(self) -> None:
        """FLUSHALL on the primary (replicated) and SCRIPT FLUSH on every node."""
        primary = self.primary()
        with primary.client() as client:
            client.flushall()
            client.execute_command("WAIT", len(self.nodes) - 1, 2000)
        for node in self.nodes:
            if node.running:
                with node.client() as client:
                    client.script_flush()
