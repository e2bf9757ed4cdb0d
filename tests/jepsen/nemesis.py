"""The servers a run owns, and the nemeses that hurt them while the clients work.

Three deployments, each on free ports in temp dirs (never the machine's own Redis):

* :class:`Single`: one redis-server with ``appendonly yes`` and ``appendfsync always``
  (every acknowledged write is on disk before its reply, so a ``kill -9`` loses none);
* :class:`Replicated`: the same primary and one replica, for ``--wait``
  (``WAIT_REPLICAS=1``) under ``none``, ``kill`` and ``pause``;
* :class:`Sentinel`: a primary, two replicas and three sentinels
  (:class:`tests.sentinel.harness.SentinelSet`), for ``failover``.

Nemeses run in a thread of the parent process, from the start of the load to its end,
with a second of calm between faults; each fault is logged with its monotonic times so a
history excerpt can be read against them. At the end the nemesis heals what it broke
(a paused server is continued, a killed one restarted) before the final reads.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from tests.faults.servers import OwnServer
from tests.sentinel.harness import SentinelSet
from tests.servers import Server, redis_server_binary

SOCKET_TIMEOUT = 1.0  # the clients' socket timeout: a pause lasts longer than this
CALM = 1.0  # seconds between two faults
# WAIT must give up before the socket does, or a slow replica reads as a lost reply.
WAIT = {"WAIT_REPLICAS": 1, "WAIT_TIMEOUT_MS": 500}


@dataclass
class AofServer(OwnServer):
    """A data node that keeps every acknowledged write through ``kill -9``."""

    def arguments(self) -> list[str]:
        # Later arguments override the base's "--appendonly no".
        return [
            *super().arguments(),
            *("--appendonly", "yes", "--appendfsync", "always"),
            *("--repl-diskless-sync-delay", "0"),
        ]


def binary() -> str:
    found = redis_server_binary()
    if found is None:
        raise RuntimeError("no redis-server on PATH")
    return found


class Deployment:
    """What the clients talk to; :meth:`settings` is their ATOMICOPS setting."""

    def start(self) -> Deployment:
        raise NotImplementedError

    def settings(self, wait: bool) -> dict[str, Any]:
        raise NotImplementedError

    def primary(self) -> Server:
        raise NotImplementedError

    def heal(self) -> None:
        """Until the deployment serves again after the last fault."""

    def remove(self) -> None:
        raise NotImplementedError


class Single(Deployment):
    def __init__(self, replicas: int = 0) -> None:
        self.server = AofServer("jepsen-primary", binary())
        self.replicas = [AofServer(f"jepsen-replica-{i}", binary()) for i in range(replicas)]

    def start(self) -> Single:
        try:
            self.server.start()
            for replica in self.replicas:
                replica.extra = ("--replicaof", "127.0.0.1", str(self.server.port))
                replica.start()
            self.wait_replicas()
        except BaseException:
            self.remove()
            raise
        return self

    def wait_replicas(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.replicas:
            try:
                with self.server.client(socket_timeout=1) as client:
                    info = client.info("replication")
                online = sum(
                    1
                    for k, v in info.items()
                    if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                )
                if online == len(self.replicas):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas not online: {self.server.log()}")
            time.sleep(0.05)

    def settings(self, wait: bool) -> dict[str, Any]:
        return {"URL": self.server.url, **(WAIT if wait else {})}

    def primary(self) -> Server:
        return self.server

    def heal(self) -> None:
        if self.server.process is not None and self.server.process.poll() is None:
            self.server.process.send_signal(signal.SIGCONT)
        if not self.server.running:
            self.server.launch()
        self.server.wait_pong()
        self.wait_replicas()

    def remove(self) -> None:
        for node in [*self.replicas, self.server]:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)  # a stopped process ignores TERM
            node.remove()


class Sentinel(Deployment):
    def __init__(self) -> None:
        self.set = SentinelSet(binary(), "jepsen")

    def start(self) -> Sentinel:
        self.set.start()
        return self

    def settings(self, wait: bool) -> dict[str, Any]:
        return {
            "SENTINELS": self.set.sentinel_addresses,
            "SERVICE": self.set.service,
            **(WAIT if wait else {}),
        }

    def primary(self) -> Server:
        return self.set.primary()

    def heal(self) -> None:
        for node in self.set.nodes:
            if not node.running:
                self.set.bring_back(node)
        self.set.wait_healthy(60)

    def remove(self) -> None:
        self.set.remove()


def deployment(nemesis: str, wait: bool) -> Deployment:
    if nemesis == "failover":
        return Sentinel()
    return Single(replicas=1 if wait else 0)


class Nemesis(threading.Thread):
    """Hurts the deployment until :meth:`finish`, then heals it; ``events`` logs each
    fault as (what, start ns, end ns)."""

    def __init__(self, kind: str, target: Deployment) -> None:
        super().__init__(name=f"nemesis-{kind}", daemon=True)
        self.kind = kind
        self.target = target
        self.done = threading.Event()
        self.events: list[tuple[str, int, int]] = []
        self.error: BaseException | None = None
        self.turn = 0

    def run(self) -> None:
        try:
            while not self.done.wait(CALM):
                if self.kind == "none":
                    continue
                started = time.monotonic_ns()
                what = getattr(self, f"_{self.kind}")()
                self.events.append((what, started, time.monotonic_ns()))
        except BaseException as exc:  # reported by finish(): the run is a harness failure
            self.error = exc

    def finish(self) -> None:
        self.done.set()
        self.join(120)
        if self.error is not None:
            raise RuntimeError(f"the {self.kind} nemesis failed: {self.error!r}") from self.error
        self.target.heal()

    # -- the faults ---------------------------------------------------------------------

    def _kill(self) -> str:
        assert isinstance(self.target, Single)
        server = self.target.server
        server.kill9()
        time.sleep(0.2)
        server.launch()  # same port, same dir: it reloads its AOF
        server.wait_pong()
        return "kill -9, restart"

    def _pause(self) -> str:
        assert isinstance(self.target, Single)
        process = self.target.server.process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            # Past the clients' socket timeout: calls in flight end OutcomeUnknown.
            time.sleep(SOCKET_TIMEOUT + 0.5)
        finally:
            process.send_signal(signal.SIGCONT)
        return f"SIGSTOP {SOCKET_TIMEOUT + 0.5:.1f}s, SIGCONT"

    def _failover(self) -> str:
        assert isinstance(self.target, Sentinel)
        sentinels = self.target.set
        self.turn += 1
        if self.turn % 2:
            old, new = sentinels.failover()
            return f"SENTINEL FAILOVER {old.name} -> {new.name}"
        victim = sentinels.kill_primary()
        new = sentinels.wait_promoted(victim)
        sentinels.bring_back(victim)  # as a replica of the new primary
        return f"kill -9 {victim.name} -> {new.name}, {victim.name} back as a replica"
