"""RabbitMQ nodes a test starts and SIGKILLs on purpose: Debian's rabbitmq-server on free loopback ports, each
node's database, logs and pid file under the test's own directory, a private Erlang cookie (HOME), no
plugins, and never the machine's own node (5672) nor its configuration (/etc/rabbitmq).

A cluster is formed the way an operator would: start every node, then `join_cluster` the others to the
first. The job queues are quorum queues (config/amqp.py), replicated to every node, their leader on the node
the declaring client was connected to.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from tests.processes import free_port

# Debian's /usr/sbin wrappers re-run these as the rabbitmq user (with its HOME and cookie): call them directly.
RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
SERVER, CTL = RABBITMQ_BIN / "rabbitmq-server", RABBITMQ_BIN / "rabbitmqctl"


def available() -> bool:
    return SERVER.exists() and CTL.exists()


class RabbitNode:
    """One node `<name>@localhost`: AMQP on `port`, Erlang distribution on `dist_port`."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.dir = workdir / name
        self.name = f"{name}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.workdir),  # the cluster's private .erlang.cookie; the CLI reads the same one
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),  # not /etc/rabbitmq's (its NODENAME)
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
        }

    def start(self) -> RabbitNode:
        """Start the node (keeping its database: a restarted node rejoins its cluster); returns at once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
                                                "consumer_timeout = 7200000\n")
        with open(self.dir / "server.log", "a") as log:
            self.proc = subprocess.Popen([str(SERVER)], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # its own group: a SIGKILL takes beam too
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name} not up within {timeout} s: {self.log_tail()}")
            result = self.ctl("await_startup", "--timeout", str(int(max(1, min(left, 15)))), check=False)
            if result.returncode == 0:
                return
            time.sleep(0.5)

    def ctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
        result = subprocess.run([str(CTL), "-n", self.name, "-q", *args], env=self.env(), capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {result.stderr or result.stdout}")
        return result

    def kill(self) -> float:
        """SIGKILL the node (the server script and the Erlang VM): no goodbye to anyone; the monotonic time."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        at = time.monotonic()
        self.proc.wait(10)
        return at

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class RabbitCluster:
    """`size` nodes joined into one cluster; users are RabbitMQ's default guest/guest (loopback only)."""

    def __init__(self, workdir: Path, size: int = 3, prefix: str | None = None) -> None:
        prefix = prefix or f"jobsha{secrets.token_hex(3)}"
        self.workdir = workdir
        self.nodes = [RabbitNode(workdir, f"{prefix}n{n + 1}") for n in range(size)]

    def start(self, timeout: float = 120.0) -> RabbitCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cookie = self.workdir / ".erlang.cookie"  # written first: nodes started together must share it
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        for node in self.nodes:
            node.start()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.wait_ready(timeout), self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        return self

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))

    def alive(self) -> RabbitNode:
        return next(node for node in self.nodes if node.running())

    def add_vhost(self, name: str) -> str:
        node = self.alive()
        node.ctl("add_vhost", name)
        node.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return name

    def url(self, vhost: str) -> str:
        """The `;` failover list every app process gets (CELERY_BROKER_URL), in node order."""
        return ";".join(f"amqp://guest:guest@127.0.0.1:{node.port}/{quote(vhost, safe='')}" for node in self.nodes)

    def queues(self, vhost: str) -> list[dict]:
        """name, type, leader, members and message counts of each queue of the vhost, as a live node says."""
        result = self.alive().ctl("list_queues", "-p", vhost, "--formatter", "json", "name", "type", "leader",
                                  "members", "messages_ready", "messages_unacknowledged")
        return json.loads(result.stdout or "[]")

    def leaders(self, vhost: str, names: list[str]) -> dict[str, str]:
        """{queue: the node leading it} for the named queues."""
        return {row["name"]: row["leader"] for row in self.queues(vhost) if row["name"] in names}

    def node(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)
