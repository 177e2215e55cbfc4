"""static/js/jobsocket.js against a real daphne: live updates, and resume after a dropped connection.

Runs the library in Node (its WebSocket is the browser's API) so the reconnect/resume/dedupe logic is
tested without a browser; skipped when no Node >= 20 is installed.
"""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from jobs import services
from tests.factories import make_processing_job, make_user
from tests.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NODE = shutil.which("node")

DRIVER = r"""
const JobSocket = require(process.argv[2]);
globalThis.location = {protocol: "http:", host: "127.0.0.1:" + process.argv[3]};
const socket = new JobSocket({path: "/ws/jobs/" + process.argv[4] + "/", token: process.argv[5],
                              backoffBaseMs: 600});
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
socket.onStatus((msg) => out({kind: "status", msg}));
socket.onConnection((state) => out({kind: "state", state}));
socket.start();
let buffer = "";
process.stdin.on("data", (chunk) => {
  buffer += chunk;
  let nl;
  while ((nl = buffer.indexOf("\n")) >= 0) {
    const command = buffer.slice(0, nl).trim();
    buffer = buffer.slice(nl + 1);
    if (command === "drop") { socket._ws.close(); }   // as if the network dropped the connection
    if (command === "exit") { socket.close(); process.exit(0); }
  }
});
"""


class NodeClient:
    def __init__(self, tmp_path: Path, port: int, job_id: str, token: str) -> None:
        script = tmp_path / "driver.js"
        script.write_text(DRIVER)
        self.proc = subprocess.Popen(
            [NODE, "--experimental-websocket", str(script), str(ROOT / "static/js/jobsocket.js"), str(port), job_id, token],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, predicate, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out; saw {self.seen}") from None
            try:
                item = json.loads(line)
            except ValueError:  # node warnings (experimental WebSocket) are not ours
                continue
            self.seen.append(item)
            if predicate(item):
                return item

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def statuses(self) -> list[dict[str, Any]]:
        return [item["msg"] for item in self.seen if item["kind"] == "status"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def is_state(state: str):
    return lambda item: item["kind"] == "state" and item["state"] == state


def has_seq(seq: int):
    return lambda item: item["kind"] == "status" and item["msg"]["seq"] >= seq


@pytest.mark.skipif(NODE is None, reason="needs Node >= 20 for its WebSocket")
def test_jobsocket__live_then_resume_after_a_dropped_connection_misses_nothing(processes, tmp_path) -> None:
    port = processes.start_daphne()
    user = make_user()
    token = Token.objects.create(user=user).key
    job = make_processing_job(owner=user)  # seq 2
    client = NodeClient(tmp_path, port, str(job.pk), token)
    try:
        client.wait_for(has_seq(2))
        for value in (10, 20):
            services.job_report_progress(job_id=job.pk, progress=value)
        client.wait_for(has_seq(4))

        client.send("drop")
        client.wait_for(is_state("reconnecting"))
        for value in (30, 40, 50):  # while the client is away
            services.job_report_progress(job_id=job.pk, progress=value)
        client.wait_for(is_state("open"))
        client.wait_for(has_seq(7))
        services.job_complete(job_id=job.pk, result={"artifacts": []})
        client.wait_for(lambda item: item["kind"] == "status" and item["msg"]["status"] == "completed")
    finally:
        client.stop()

    received = client.statuses()
    assert [m["seq"] for m in received] == [2, 3, 4, 5, 6, 7, 8], "in order, nothing missed, nothing twice"
    assert [m["progress"] for m in received] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0]
    assert received[-1]["result"] == {"artifacts": []}
    states = [item["state"] for item in client.seen if item["kind"] == "state"]
    assert states == ["open", "reconnecting", "open"]
