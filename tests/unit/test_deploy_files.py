"""compose.yaml and Procfile: valid, one worker per queue, the right commands, production settings.

No Docker engine runs here, so compose.yaml is checked as data; its environment is fed to `check --deploy`.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parents[2]
QUEUES = set(settings.JOB_QUEUES)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def procfile() -> dict[str, str]:
    return dict(parse_procfile((ROOT / "Procfile").read_text()).processes)


def _argv(command: list[str] | str) -> list[str]:
    return command if isinstance(command, list) else shlex.split(command)


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _workers(commands: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: argv for name, argv in commands.items() if argv[:4] == ["celery", "-A", "config", "worker"]}


def _interpolate(value: str, given: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} forms, from `given`."""
    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in given:
            return given[name]
        if op == ":?":
            raise AssertionError(f"{name} is required: {arg}")
        return arg if op == ":-" else ""
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def test_compose__has_every_service_of_the_deployment(compose: dict) -> None:
    assert {"web", "beat", "flower", "postgres", "redis", "migrate"} <= set(compose["services"])


def test_compose__one_worker_service_per_queue(compose: dict) -> None:
    commands = {name: _argv(svc["command"]) for name, svc in compose["services"].items() if "command" in svc}
    workers = _workers(commands)
    queues = [_option(argv, "-Q") for argv in workers.values()]
    assert sorted(queues) == sorted(QUEUES)  # each queue exactly once, and a single queue per service
    names = [_option(argv, "-n") for argv in workers.values()]
    assert len(set(names)) == len(names) and all(name.endswith("@%h") for name in names)


def test_compose__web_is_daphne_with_a_healthz_healthcheck(compose: dict) -> None:
    web = compose["services"]["web"]
    argv = _argv(web["command"])
    assert argv[:3] == ["python", "-m", "patches.daphne"] and argv[-1] == "config.asgi:application"
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert web["ports"]


def test_compose__beat_uses_the_database_scheduler_and_runs_once(compose: dict) -> None:
    beat = compose["services"]["beat"]
    argv = _argv(beat["command"])
    assert argv[:4] == ["celery", "-A", "config", "beat"]
    assert _option(argv, "-S") == "django_celery_beat.schedulers:DatabaseScheduler"
    assert beat["deploy"]["replicas"] == 1


def test_compose__flower_is_password_protected(compose: dict) -> None:
    flower = compose["services"]["flower"]
    assert "flower" in " ".join(_argv(flower["command"])) and "--basic-auth" in " ".join(_argv(flower["command"]))
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def test_compose__app_services_share_media_and_metrics_and_run_in_production_mode(compose: dict) -> None:
    services = compose["services"]
    app = [name for name, svc in services.items() if svc.get("image", "").startswith("videojobs")]
    assert {"web", "beat", "flower", "migrate"} <= set(app) and len(app) == 4 + len(QUEUES)
    for name in app:
        env = services[name]["environment"]
        assert env["DJANGO_DEBUG"] == "0", name
        assert env["LOG_FORMAT"] == "json", name
        assert "postgres:5432" in env["DATABASE_URL"] and env["REDIS_URL"].startswith("redis://redis:")
        mounts = dict(volume.split(":")[::-1] for volume in services[name]["volumes"])
        assert mounts[env["MEDIA_ROOT"]] == "media", name  # workers write artifacts that web serves
        assert mounts[env["PROMETHEUS_MULTIPROC_DIR"]] == "metrics", name  # web's /metrics sums workers
    for name in set(app) - {"migrate"}:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"media", "metrics", "pgdata", "redisdata"} <= set(compose["volumes"])
    assert compose["volumes"]["metrics"]["driver_opts"]["type"] == "tmpfs"  # emptied at a full restart
    assert (ROOT / compose["services"]["web"]["build"] / "Dockerfile").exists()


def test_compose__postgres_and_redis_have_healthchecks(compose: dict) -> None:
    for name in ("postgres", "redis"):
        assert compose["services"][name]["healthcheck"]["test"]


def test_compose__web_environment_passes_check_deploy(compose: dict, tmp_path: Path) -> None:
    given = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "POSTGRES_PASSWORD": "pw", "APP_HOST": "jobs.example.com"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PROMETHEUS_"))}
    env.update({k: _interpolate(str(v), given) for k, v in compose["services"]["web"]["environment"].items()})
    env.update(PROMETHEUS_MULTIPROC_DIR=str(tmp_path), MEDIA_ROOT=str(tmp_path / "media"))  # not /srv here
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert env["DJANGO_ALLOWED_HOSTS"] == "jobs.example.com,localhost"


def _without_env(argv: list[str]) -> list[str]:
    """The command after its leading `NAME=value` assignments."""
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
        argv = argv[1:]
    return argv


def test_procfile__every_process_runs_with_debug_off_unless_told_otherwise(procfile: dict[str, str]) -> None:
    for name, command in procfile.items():
        assert _argv(command)[0] == "DJANGO_DEBUG=${DJANGO_DEBUG:-0}", name


def test_compose__web_port_reachable_from_this_host_only_as_it_trusts_forwarded_headers(compose: dict) -> None:
    web = compose["services"]["web"]
    assert "--proxy-headers" in _argv(web["command"]) and web["environment"]["DJANGO_BEHIND_PROXY"] == "1"
    assert web["ports"] and all(str(port).startswith("127.0.0.1:") for port in web["ports"])


def test_procfile__web_beat_and_one_worker_per_queue(procfile: dict[str, str]) -> None:
    commands = {name: _without_env(_argv(command)) for name, command in procfile.items()}
    assert commands["web"][:3] == ["python", "-m", "patches.daphne"] and commands["web"][-1] == "config.asgi:application"
    workers = _workers(commands)
    assert sorted(_option(argv, "-Q") for argv in workers.values()) == sorted(QUEUES)
    assert _option(commands["beat"], "-S") == "django_celery_beat.schedulers:DatabaseScheduler"
    assert set(commands) == {"web", "beat", *workers}


def test_procfile__honcho_accepts_it() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "honcho"), "-f", "Procfile", "check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Valid procfile detected" in result.stderr + result.stdout
