"""When `make test` adds the RabbitMQ pass (devtools/testrun.py)."""
from __future__ import annotations

import pytest

from devtools import testrun


@pytest.mark.parametrize(("env", "argv", "wanted"), [
    ({}, [], True),  # a whole run: CI
    ({}, ["tests/unit", "-q"], False),  # a developer's selection
    ({"TEST_AMQP_PASS": "1"}, ["tests/unit"], True),
    ({"TEST_AMQP_PASS": "0"}, [], False),
    ({"TEST_BROKER": "amqp"}, [], False),  # the main run already was on RabbitMQ
])
def test_amqp_pass_wanted(monkeypatch, env: dict[str, str], argv: list[str], wanted: bool) -> None:
    for name in ("TEST_AMQP_PASS", "TEST_BROKER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert testrun._amqp_pass_wanted(argv) is wanted


def test_unreachable_rabbitmq_warns_and_skips_the_pass(monkeypatch, capsys) -> None:
    from tests import brokers

    monkeypatch.setattr(brokers, "RABBITMQ_URL", "amqp://user:s3cret@127.0.0.1:1")
    assert testrun._amqp_pass() == 0
    err = capsys.readouterr().err
    assert "WARNING: RabbitMQ is not reachable at 127.0.0.1:1" in err and "s3cret" not in err


def test_every_test_directory_runs_in_exactly_one_lane() -> None:
    # A directory in no lane would silently drop out of CI's `make test`; one in two would run twice.
    from pathlib import Path

    tests = Path(testrun.BASE_DIR) / "tests"
    wanted = sorted(f"tests/{d.name}" for d in tests.iterdir() if d.is_dir() and any(d.rglob("test_*.py")))
    listed = sorted(path for steps in testrun.LANES.values() for step in steps if step != testrun.AMQP_PASS
                    for path in step if not path.startswith("-"))
    assert listed == wanted
    assert sum(testrun.AMQP_PASS in steps for steps in testrun.LANES.values()) == 1


def test_lanes_are_isolated_from_each_other(monkeypatch, tmp_path) -> None:
    # given a whole run's isolation, as main() sets it up
    for name, value in {"TEST_RUN_ID": "r1", "REDIS_KEY_PREFIX": "test-r1", "TEST_ARTIFACTS_DIR": str(tmp_path),
                        "DATABASE_URL": "postgres://root@127.0.0.1:5432/x",
                        "DATABASE_TEST_NAME": "test_vg_r1"}.items():
        monkeypatch.setenv(name, value)

    # when each lane derives its own
    envs = {name: testrun.lane_env(name) for name in testrun.LANES}

    # then no two share a key prefix (nor does one's prefix start another's: keys are deleted by prefix),
    # a test database, an artifacts folder or a run id (the RabbitMQ vhost's name)
    prefixes = [env["REDIS_KEY_PREFIX"] for env in envs.values()]
    assert all(a == b or not b.startswith(a) for a in prefixes for b in prefixes)
    assert all(p.startswith("test-r1-") for p in prefixes)
    for key in ("DATABASE_TEST_NAME", "TEST_ARTIFACTS_DIR", "MEDIA_ROOT", "TEST_RUN_ID"):
        assert len({env[key] for env in envs.values()}) == len(envs), key
    assert all(env["DATABASE_TEST_NAME"].startswith("test_vg_r1_") for env in envs.values())


@pytest.mark.parametrize(("value", "wanted"), [(None, True), ("", True), ("1", False)])
def test_test_lanes_1_runs_a_whole_run_as_one_session(monkeypatch, value: str | None, wanted: bool) -> None:
    monkeypatch.delenv("TEST_LANES", raising=False)
    if value is not None:
        monkeypatch.setenv("TEST_LANES", value)
    assert testrun._lanes_wanted() is wanted
