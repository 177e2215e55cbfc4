"""Django through a real transaction-mode PgBouncer (Debian's, started on a free loopback port in front of
the test PostgreSQL) with DATABASE_PGBOUNCER=1: the job life cycle (locked transitions, the one-statement
progress report, on-commit dispatch), lists and QuerySet.iterator() from two processes at once, over a
pool of two server connections, so their transactions really are interleaved on shared connections.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection, connections

from tests.processes import ROOT, artifacts_dir, free_port, subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PgBouncer fronts PostgreSQL"),
]

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOL_SIZE = 2

# Runs in each client process: a whole job life cycle several times, then a list and an iterator.
WORKLOAD = """
import os
import django; django.setup()
from django.db import connection
from jobs import services, states
from jobs.models import GenerationJob
from tests.factories import make_job, make_user

assert connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] is True
for n in range(4):
    job = make_job(job_type="audio_generation", owner=make_user(username=f"pgbouncer-{os.getpid()}-{n}"))
    services.job_start(job_id=job.pk, worker="pgbouncer-test", task_id=f"t{n}", attempt=1)
    for progress in range(10, 100, 10):
        services.job_report_progress(job_id=job.pk, progress=progress, stage="narration", part=None, attempt=1)
    services.job_complete(job_id=job.pk, result={}, attempt=1)
    done = GenerationJob.objects.get(pk=job.pk)
    assert (done.status, done.progress) == (states.COMPLETED, 100.0), (done.status, done.progress)
named = []  # iterator() must not open a server-side (named) cursor: DECLARE ... WITH HOLD outlives a transaction
chunked_cursor = connection.chunked_cursor
connection.chunked_cursor = lambda: named.append(1) or chunked_cursor()
ids = [job.pk for job in GenerationJob.objects.order_by("created_at").iterator(chunk_size=2)]
assert len(ids) >= 4 and named == [], (len(ids), named)
print("WORKLOAD OK", len(ids))
"""


def _wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("pgbouncer did not listen within 20 s")


@pytest.fixture(scope="module")
def pgbouncer(django_db_setup):
    """(port, admin user): a transaction-mode PgBouncer with a pool of POOL_SIZE per database and user."""
    if not os.path.exists(PGBOUNCER):
        pytest.fail("pgbouncer is not installed (`make test` installs Debian's pgbouncer when run as root)")
    db = connections["default"].settings_dict
    user = db.get("USER") or "postgres"
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=artifacts_dir()))
    workdir.chmod(0o777)  # pgbouncer refuses to run as root: as root it is started as `postgres`
    port = free_port()
    password = f" password={db['PASSWORD']}" if db.get("PASSWORD") else ""
    ini = workdir / "pgbouncer.ini"
    ini.write_text(f"""[databases]
* = host={db.get('HOST') or '127.0.0.1'} port={db.get('PORT') or 5432} user={user}{password}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
admin_users = {user}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 200
logfile = {workdir / 'pgbouncer.log'}
pidfile = {workdir / 'pgbouncer.pid'}
ignore_startup_parameters = extra_float_digits,options
""")
    ini.chmod(0o644)
    command = [PGBOUNCER, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(ini)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(port, proc, workdir / "pgbouncer.log")
        yield port, user
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _admin(port: int, user: str, command: str) -> list[dict]:
    with psycopg.connect(host="127.0.0.1", port=port, dbname="pgbouncer", user=user, autocommit=True) as conn:
        cursor = conn.execute(command)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_pgbouncer__job_life_cycles_from_two_processes_through_transaction_pooling(pgbouncer):
    port, user = pgbouncer
    db = connections["default"].settings_dict
    auth = user + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    env = subprocess_env(DATABASE_URL=f"postgres://{auth}@127.0.0.1:{port}/{db['NAME']}", DATABASE_PGBOUNCER="1")
    clients = [subprocess.Popen([sys.executable, "-c", WORKLOAD], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [client.communicate(timeout=240)[0] for client in clients]

    for client, output in zip(clients, outputs):
        assert client.returncode == 0 and "WORKLOAD OK" in output, output[-3000:]
    pools = [row for row in _admin(port, user, "SHOW POOLS") if row["database"] == db["NAME"]]
    assert pools and pools[0]["pool_mode"] == "transaction"
    stats = next(row for row in _admin(port, user, "SHOW STATS") if row["database"] == db["NAME"])
    assert stats["total_xact_count"] > 2 * 4 * 9  # every transaction went through PgBouncer ...
    servers = [row for row in _admin(port, user, "SHOW SERVERS") if row["database"] == db["NAME"]]
    assert 1 <= len(servers) <= POOL_SIZE  # ... on at most two server connections shared by both processes
