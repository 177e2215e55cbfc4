"""The soak's users: each one a thread acting through the HTTP API on a seeded, timed plan.

A user creates jobs in their project (with an `Idempotency-Key`, so a request cut by a fault is retried
without creating a second job), cancels some of them soon after, retries some of the cancelled ones, and
edits the project's script now and then. What the API answered is recorded, so the test can say what each
job's final status must be: `cancelled` exactly when the last cancel or retry the API accepted was a cancel.
"""
from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from tests.e2e.fake_backend import script

CANCEL, RETRY = "cancel", "retry"
TINY_IMAGES = {"width": 64, "height": 64}
SERVER_ERROR_RETRIES = 30


def project_script(user_n: int, version: int, rng: random.Random) -> str:
    """Two or three scenes; one draws slowly on the fake backend, so a worker kill or cancel lands mid-stage."""
    scenes = [f"User {user_n} harbour v{version} [slow:{rng.choice(('0.2', '0.4'))}] scene.",
              f"User {user_n} market v{version} scene."]
    if rng.random() < 0.5:
        scenes.append(f"User {user_n} lighthouse v{version} scene.")
    return script(*scenes)


@dataclass
class JobPlan:
    """One job of a user's plan: the pause before creating it, then cancel / retry / cancel-again delays."""

    think_s: float
    cancel_after_s: float | None = None
    retry_after_s: float | None = None
    recancel_after_s: float | None = None
    edit_before: bool = False  # edit the project's script just before creating this job


def plan(rng: random.Random, jobs: int, mean_think_s: float, edits: int) -> list[JobPlan]:
    """The user's jobs: exponential think times; a fifth cancelled soon after, half of those retried, a fifth
    of the retried cancelled again; `edits` script edits before random jobs."""
    steps = []
    edit_at = set(rng.sample(range(1, jobs), edits))
    for index in range(jobs):
        step = JobPlan(think_s=rng.expovariate(1 / mean_think_s), edit_before=index in edit_at)
        if rng.random() < 0.2:
            step.cancel_after_s = rng.uniform(0.2, 6.0)
            if rng.random() < 0.5:
                step.retry_after_s = rng.uniform(0.5, 4.0)
                if rng.random() < 0.2:
                    step.recancel_after_s = rng.uniform(0.2, 3.0)
        steps.append(step)
    return steps


@dataclass
class Answer:
    action: str
    status: int
    at: float


@dataclass
class SoakUser:
    n: int
    token: str
    project_id: str
    webhook_url: str | None
    rng: random.Random
    job_ids: list[str] = field(default_factory=list)
    created_at: list[float] = field(default_factory=list)  # monotonic, per job
    answers: dict[str, list[Answer]] = field(default_factory=dict)  # job id -> cancel/retry answers
    server_errors: list[str] = field(default_factory=list)
    throttled: int = 0
    edits: int = 0

    def expected_status(self, job_id: str) -> str | None:
        """`cancelled` if the last accepted cancel/retry was a cancel; None (not cancelled) otherwise."""
        accepted = [a for a in self.answers.get(job_id, []) if a.status == 200]
        return "cancelled" if accepted and accepted[-1].action == CANCEL else None


class UserThread(threading.Thread):
    """Runs one user's plan against the API.

    A closed loop, as a client with a concurrency limit is: a new job is created only while fewer than
    `outstanding` of the user's jobs are unfinished, so a slower machine makes a slower soak, never a
    backlog that grows without end. Cancels and retries fall due at their own times meanwhile. How many
    are unfinished the user learns from their own live feed (`unfinished`: the project's websocket),
    as a client with one would, not by polling the API.
    """

    def __init__(self, user: SoakUser, base_url: str, steps: list[JobPlan], outstanding: int,
                 unfinished: Callable[[], int], on_created: Callable[[SoakUser, int, str], None],
                 on_retried: Callable[[str], None]) -> None:
        super().__init__(name=f"soak-user-{user.n}", daemon=True)
        self.user, self.base_url, self.steps, self.outstanding = user, base_url, steps, outstanding
        self.unfinished, self.on_created, self.on_retried = unfinished, on_created, on_retried
        self.due: list[tuple[float, int, str]] = []  # (when, job index, cancel|retry), a heap
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=30,
                              headers={"Authorization": f"Token {self.user.token}"}) as api:
                for index, step in enumerate(self.steps):
                    self.wait(api, time.monotonic() + step.think_s)
                    while self.unfinished() >= self.outstanding:
                        self.wait(api, time.monotonic() + 0.25)
                    if step.edit_before:
                        self.edit(api)
                    self.create(api, index, step)
                while self.due:
                    self.wait(api, self.due[0][0])
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which fails with it
            self.failure = exc

    def wait(self, api: httpx.Client, until: float) -> None:
        """Sleep until `until`, acting on every cancel or retry that falls due meanwhile."""
        while True:
            if self.due and self.due[0][0] <= time.monotonic():
                _, index, action = heapq.heappop(self.due)
                self.act(api, index, action)
                continue
            now = time.monotonic()
            if now >= until:
                return
            time.sleep(min(until, self.due[0][0] if self.due else until) - now)

    def create(self, api: httpx.Client, index: int, step: JobPlan) -> None:
        user = self.user
        body: dict[str, Any] = {"project_id": user.project_id, "job_type": "image_generation", "params": TINY_IMAGES}
        if user.webhook_url:
            body["webhook_url"] = user.webhook_url
            body["webhook_events_filter"] = ["start", "completed"] if index % 2 else ["completed"]
        response = self.request(api, "POST", "/api/jobs/", body, {"Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 201, (response.status_code, response.text[:300])
        job_id = response.json()["id"]
        user.job_ids.append(job_id)
        user.created_at.append(time.monotonic())
        self.on_created(user, index, job_id)
        at = time.monotonic()
        for action, delay in ((CANCEL, step.cancel_after_s), (RETRY, step.retry_after_s),
                              (CANCEL, step.recancel_after_s)):
            if delay is None:
                break
            at += delay
            heapq.heappush(self.due, (at, index, action))

    def act(self, api: httpx.Client, index: int, action: str) -> None:
        job_id = self.user.job_ids[index]
        response = self.request(api, "POST", f"/api/jobs/{job_id}/{action}/")
        assert response.status_code in (200, 409), (action, response.status_code, response.text[:300])
        self.user.answers.setdefault(job_id, []).append(Answer(action, response.status_code, time.monotonic()))
        if action == RETRY and response.status_code == 200:
            self.on_retried(job_id)

    def edit(self, api: httpx.Client) -> None:
        self.user.edits += 1
        response = self.request(api, "PATCH", f"/api/projects/{self.user.project_id}/",
                                {"script": project_script(self.user.n, self.user.edits, self.user.rng)})
        assert response.status_code == 200, (response.status_code, response.text[:300])

    def request(self, api: httpx.Client, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> httpx.Response:
        """One API call as a careful client makes it: a throttled call waits its Retry-After; a connection
        cut or a 5xx is retried (the same Idempotency-Key makes a retried create safe), and recorded."""
        for _ in range(SERVER_ERROR_RETRIES):
            try:
                response = api.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                self.user.server_errors.append(f"{method} {path}: {exc!r}")
                time.sleep(0.5)
                continue
            if response.status_code == 429:
                self.user.throttled += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status_code >= 500:
                self.user.server_errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
                time.sleep(0.5)
                continue
            return response
        raise AssertionError(f"{method} {path} kept failing: {self.user.server_errors[-3:]}")
