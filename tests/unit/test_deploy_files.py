"""compose.yaml and Procfile: valid, one worker per queue, the right commands, production settings.

compose.yaml holds three deployments, one profile each (`single`, `scale`, `ha`; docs/OPERATIONS.md). Where
`docker compose` exists, `docker compose --profile P config` must accept each; everywhere, each profile is
checked as data: its services exist and depend only on services of the same profile, every app command
resolves (modules, management commands, queues, scheduler), `scale` and `ha` worker pools share no volume,
and each profile's web environment passes `manage.py check --deploy`.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parents[2]
QUEUES = set(settings.JOB_QUEUES)
PROFILES = ("single", "scale", "ha")
# What the deployment's operator must set (the `${VAR:?…}` ones) and a host name, for interpolation.
GIVEN = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "POSTGRES_PASSWORD": "pw", "APP_HOST": "jobs.example.com",
         "FLOWER_PASSWORD": "fl", "S3_SECRET_KEY": "s3-secret-key"}


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


def _profile(compose: dict, profile: str) -> dict[str, dict]:
    """The services `docker compose --profile <profile>` starts: those of no profile and those of this one."""
    return {name: svc for name, svc in compose["services"].items()
            if "profiles" not in svc or profile in svc["profiles"]}


def _app(services: dict[str, dict]) -> dict[str, dict]:
    return {name: svc for name, svc in services.items() if svc.get("image", "").startswith("videojobs")}


def _commands(services: dict[str, dict]) -> dict[str, list[str]]:
    return {name: _argv(svc["command"]) for name, svc in services.items() if "command" in svc}


def _one(services: dict[str, dict], predicate) -> str:
    names = [name for name, argv in _commands(services).items() if predicate(argv)]
    assert len(names) == 1, names
    return names[0]


def _web(services: dict[str, dict]) -> str:
    return _one(services, lambda argv: argv[:3] == ["python", "-m", "patches.daphne"])


def _env(svc: dict) -> dict[str, str]:
    return {k: _interpolate(str(v), GIVEN) for k, v in svc["environment"].items()}


@pytest.mark.parametrize("profile", PROFILES)
def test_compose__each_profile_has_every_service_of_the_deployment(compose: dict, profile: str) -> None:
    services = _profile(compose, profile)
    assert "postgres" in services
    _web(services)
    _one(services, lambda argv: argv[:4] == ["celery", "-A", "config", "beat"])
    _one(services, lambda argv: "manage.py migrate" in " ".join(argv))
    _one(services, lambda argv: "celery -A config flower" in " ".join(argv))
    assert any("redis-server" in " ".join(argv) for argv in _commands(services).values())


@pytest.mark.parametrize("profile", PROFILES)
def test_compose__each_profile_depends_only_on_its_own_services(compose: dict, profile: str) -> None:
    services = _profile(compose, profile)
    for name, svc in services.items():
        for needed, how in (svc.get("depends_on") or {}).items():
            assert needed in services, f"{profile}: {name} depends on {needed}, which is not in the profile"
            if how["condition"] == "service_healthy":
                assert services[needed].get("healthcheck"), f"{profile}: {needed} has no healthcheck"
            if how["condition"] == "service_completed_successfully":
                assert services[needed].get("restart") == "no", f"{profile}: one-shot {needed} restarts"
    for name in set(_app(services)) - {_one(services, lambda argv: "manage.py migrate" in " ".join(argv))}:
        conditions = {how["condition"] for how in services[name]["depends_on"].values()}
        assert "service_completed_successfully" in conditions, f"{profile}: {name} may start before migrate"


@pytest.mark.parametrize("profile", PROFILES)
def test_compose__one_worker_service_per_queue(compose: dict, profile: str) -> None:
    workers = _workers(_commands(_profile(compose, profile)))
    queues = [_option(argv, "-Q") for argv in workers.values()]
    assert sorted(queues) == sorted(QUEUES)  # each queue exactly once, and a single queue per service
    names = [_option(argv, "-n") for argv in workers.values()]
    assert len(set(names)) == len(names) and all(name.endswith("@%h") for name in names)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def test_compose__every_app_command_resolves(compose: dict) -> None:
    from django.core.management import get_commands

    commands = get_commands()
    for name, svc in _app(compose["services"]).items():
        argv = _argv(svc["command"])
        if argv[:2] == ["sh", "-c"]:
            line = argv[2]
            for used in re.findall(r"manage\.py (\w+)", line):
                assert used in commands, f"{name}: manage.py {used} does not exist"
            if "celery" in line:
                assert "-A config" in line and _module_exists("flower"), name
            continue
        if argv[:2] == ["python", "-m"]:
            assert _module_exists(argv[2]), f"{name}: python -m {argv[2]}"
            module, _, attribute = argv[-1].partition(":")
            assert _module_exists(module) and attribute, f"{name}: {argv[-1]}"
        else:
            assert argv[:3] == ["celery", "-A", "config"] and argv[3] in ("worker", "beat"), name
            if argv[3] == "beat":
                assert _module_exists(_option(argv, "-S").rsplit(".", 1)[0]), name


def test_compose__web_is_daphne_with_a_healthz_healthcheck_on_loopback_only(compose: dict) -> None:
    for profile in PROFILES:
        services = _profile(compose, profile)
        web = services[_web(services)]
        argv = _argv(web["command"])
        assert argv[-1] == "config.asgi:application"
        assert "/healthz" in " ".join(web["healthcheck"]["test"])
        # web trusts X-Forwarded-For/-Proto, so a client reaching it directly could pick its address and scheme.
        assert "--proxy-headers" in argv and web["environment"]["DJANGO_BEHIND_PROXY"] == "1"
        assert web["ports"] and all(str(port).startswith("127.0.0.1:") for port in web["ports"])


def test_compose__beat_uses_the_database_scheduler_and_runs_once(compose: dict) -> None:
    for profile in PROFILES:
        services = _profile(compose, profile)
        beat = services[_one(services, lambda argv: argv[:4] == ["celery", "-A", "config", "beat"])]
        assert _option(_argv(beat["command"]), "-S") == "django_celery_beat.schedulers:DatabaseScheduler"
        assert beat["deploy"]["replicas"] == 1


def test_compose__flower_is_password_protected(compose: dict) -> None:
    for profile in PROFILES:
        services = _profile(compose, profile)
        flower = services[_one(services, lambda argv: "celery -A config flower" in " ".join(argv))]
        assert "--basic-auth" in " ".join(_argv(flower["command"]))
        assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


@pytest.mark.parametrize("broker_api", ["", "http://ops:s3cret@mq-1:15672/api/"])
def test_compose__flower_passes_the_rabbitmq_management_api_only_when_given(compose: dict, broker_api: str) -> None:
    # The shell command run as compose would (its $$ is a literal $), with `celery` a function echoing its argv.
    for profile in PROFILES:
        services = _profile(compose, profile)
        flower = services[_one(services, lambda argv: "celery -A config flower" in " ".join(argv))]
        shell, flag, line = _argv(flower["command"])
        assert (shell, flag) == ("sh", "-c") and flower["environment"]["FLOWER_BROKER_API"] == "${FLOWER_BROKER_API:-}"
        env = {"PATH": os.environ["PATH"], "FLOWER_USER": "ops", "FLOWER_PASSWORD": "pw", "FLOWER_BROKER_API": broker_api}
        echoed = subprocess.run(["sh", "-c", 'celery() { printf "%s\\n" "$@"; }; ' + line.replace("$$", "$")], env=env,
                                capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()
        assert echoed[:3] == ["-A", "config", "flower"] and "--basic-auth=ops:pw" in echoed
        assert [arg for arg in echoed if arg.startswith("--broker_api")] == ([f"--broker_api={broker_api}"] if broker_api else [])


def test_compose__single_app_services_share_media_and_metrics_and_run_in_production_mode(compose: dict) -> None:
    services = _profile(compose, "single")
    app = _app(services)
    assert len(app) == 4 + len(QUEUES)  # migrate, web, beat, flower and one worker per queue
    for name, svc in app.items():
        env = svc["environment"]
        assert env["DJANGO_DEBUG"] == "0", name
        assert env["LOG_FORMAT"] == "json", name
        assert "postgres:5432" in env["DATABASE_URL"] and env["REDIS_URL"].startswith("redis://redis:")
        if name == "migrate":
            continue
        mounts = dict(volume.split(":")[::-1] for volume in svc["volumes"])
        assert mounts[env["MEDIA_ROOT"]] == "media", name  # workers write artifacts that web serves
        assert mounts[env["PROMETHEUS_MULTIPROC_DIR"]] == "metrics", name  # web's /metrics sums workers
    assert {"media", "metrics", "pgdata", "redisdata"} <= set(compose["volumes"])
    assert compose["volumes"]["metrics"]["driver_opts"]["type"] == "tmpfs"  # emptied at a full restart
    assert (ROOT / services["web"]["build"] / "Dockerfile").exists()


@pytest.mark.parametrize("profile", ["scale", "ha"])
def test_compose__scale_and_ha_pools_share_no_volume_and_keep_artifacts_in_s3(compose: dict, profile: str) -> None:
    services = _profile(compose, profile)
    app = _app(services)
    assert len(app) == 4 + len(QUEUES)
    for name, svc in app.items():
        # No volume at all: anything mounted could only be shared storage; scratch is the container's tmpfs.
        assert not svc.get("volumes"), f"{profile}: {name} mounts {svc.get('volumes')}"
        env = _env(svc)
        assert env["DJANGO_DEBUG"] == "0" and env["LOG_FORMAT"] == "json", name
        assert env["ARTIFACT_STORAGE"] == "s3", name
        for variable in ("AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                         "AWS_S3_REGION_NAME"):
            assert env[variable], f"{profile}: {name} lacks {variable}"
        if name != _one(services, lambda argv: "manage.py migrate" in " ".join(argv)):
            tmpfs = {entry.split(":")[0] for entry in svc["tmpfs"]}
            assert {env["MEDIA_ROOT"], env["PROMETHEUS_MULTIPROC_DIR"]} <= tmpfs, name
    store = services["minio"]
    bucket = services["minio-bucket"]
    assert "mc mb" in " ".join(_argv(bucket["entrypoint"])) and "minio" in bucket["depends_on"]
    assert _interpolate(str(bucket["environment"]["BUCKET"]), GIVEN) == _env(app[_web(services)])["AWS_STORAGE_BUCKET_NAME"]
    assert store["volumes"] and all(name in {"miniodata"} for name in (v.split(":")[0] for v in store["volumes"]))


def test_compose__ha_redis_is_a_primary_a_replica_and_three_sentinels_the_app_follows(compose: dict) -> None:
    services = _profile(compose, "ha")
    sentinels = sorted(name for name, svc in services.items() if "--sentinel" in " ".join(_argv(svc.get("command", []))))
    assert len(sentinels) == 3
    monitors = {re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", services[name]["command"][2]).groups()
                for name in sentinels}
    assert len(monitors) == 1
    [(master, primary, port, quorum)] = monitors
    assert primary in services and int(quorum) == 2  # a majority of three: one sentinel may be lost
    replicas = [name for name, svc in services.items() if "--replicaof" in _argv(svc.get("command", []))]
    assert len(replicas) == 1 and _argv(services[replicas[0]]["command"])[-2:] == [primary, port]
    assert "redis" not in services  # no Redis outside the sentinels' watch
    for name, svc in _app(services).items():
        env = _env(svc)
        assert env["REDIS_SENTINEL_MASTER"] == master, name
        assert sorted(env["REDIS_SENTINELS"].split(",")) == [f"{s}:26379" for s in sentinels], name
        assert "REDIS_URL" not in env and "CELERY_BROKER_URL" not in env, name  # every role through the sentinels


@pytest.mark.parametrize("profile", PROFILES)
def test_compose__each_profiles_web_environment_passes_check_deploy(compose: dict, profile: str, tmp_path: Path) -> None:
    services = _profile(compose, profile)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "PROMETHEUS_", "REDIS_", "CELERY_", "AWS_", "ARTIFACT_"))}
    env.update(_env(services[_web(services)]))
    env.update(PROMETHEUS_MULTIPROC_DIR=str(tmp_path), MEDIA_ROOT=str(tmp_path / "media"))  # not /srv here
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert env["DJANGO_ALLOWED_HOSTS"] == "jobs.example.com,localhost"


# Read by the compose commands themselves, not by the app: the healthcheck's worker name, flower's login and
# RabbitMQ management API.
COMPOSE_ONLY = {"WORKER_NAME", "FLOWER_USER", "FLOWER_PASSWORD", "FLOWER_BROKER_API"}


def test_compose__every_setting_an_app_service_sets_is_read_by_the_code(compose: dict) -> None:
    """A misspelt variable is silently ignored by the app: each name must be read somewhere in the code."""
    sources = "\n".join(path.read_text() for top in ("config", "ops", "jobs", "realtime", "api", "accounts",
                                                       "projects", "webhooks", "patches")
                        for path in (ROOT / top).rglob("*.py"))
    names = {name for svc in _app(compose["services"]).values() for name in svc["environment"]}
    unread = sorted(name for name in names - COMPOSE_ONLY if f'"{name}"' not in sources)
    assert not unread, f"set in compose.yaml but read nowhere: {unread}"


def _docker_compose() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run([*command, "version"], capture_output=True).returncode == 0:
            return command
    return None


@pytest.mark.skipif(_docker_compose() is None, reason="no docker compose here: the data checks above stand in")
@pytest.mark.parametrize("profile", PROFILES)
def test_compose__docker_compose_config_accepts_each_profile(profile: str) -> None:
    result = subprocess.run([*_docker_compose(), "--profile", profile, "config", "--services"], cwd=ROOT,
                            env={**os.environ, **GIVEN}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "postgres" in result.stdout.split()


def _without_env(argv: list[str]) -> list[str]:
    """The command after its leading `NAME=value` assignments."""
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
        argv = argv[1:]
    return argv


def test_procfile__every_process_runs_with_debug_off_unless_told_otherwise(procfile: dict[str, str]) -> None:
    for name, command in procfile.items():
        assert _argv(command)[0] == "DJANGO_DEBUG=${DJANGO_DEBUG:-0}", name


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
