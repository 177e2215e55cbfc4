"""The hardening step's abuse, run against the soak's web process while the soak's users and faults go on.

The same probes as the suites that prove each limit alone (test_request_bodies, test_ws_abuse, test_ws_guards,
test_logins, test_job_size, test_cross_user, the job-create throttle and the SSE stream cap), here each
refused as it is there while the soak's clients are served: each probe records "ok" or what went wrong, and
the soak's invariants show that the ordinary users were unaffected.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

from tests.integration.api.endpoints import endpoints

from .test_cross_user import ws_close_code
from .test_request_bodies import GIGABYTE, post_huge
from .test_ws_abuse import connect_cycles, junk_frames, never_reads, oversize_frames

CONNECT_CYCLES = 100  # a tenth of the alone test's: the point here is "while loaded", not the count
HANDSHAKE_TRIES = 3  # a handshake the loaded server dropped is tried again, as static/js/jobsocket.js does
LOGIN_GUESSES = 30
THROTTLE_POSTS = 75  # over the default 60 job creations a minute


@dataclass
class Abuser:
    """Who the probes act as, and what they aim at."""

    port: int
    token: str  # the abuser's own project and job
    project_id: str
    job_id: str
    throttled_token: str  # a second abuser, who spends their job-create budget
    victim_project_id: str  # a soak user's project and job: every call on them must be a 404
    victim_job_id: str
    login_username: str  # a user whose password is guessed
    honest_username: str  # a user who logs in meanwhile from another address
    honest_password: str
    sockets_per_user: int
    sse_streams_per_user: int
    failures: dict[str, str] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)  # probe -> (start, end), monotonic

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/jobs/{self.job_id}/?token={self.token}"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Token {token or self.token}"}


async def connect_again(url: str, **options: Any):
    """`connect`, trying again (up to HANDSHAKE_TRIES) when the server dropped the handshake unanswered.

    daphne aborts a handshake the application has not accepted within `--websocket_connect_timeout` (5 s,
    autobahn's openHandshakeTimeout): a web process at load 20 on 2 cores (the soak beside other test runs)
    can take that long, and the client sees the connection end before any status line. That is the server
    shedding load, not a limit failing; a browser's jobsocket.js reconnects, and so does this."""
    for attempt in range(1, HANDSHAKE_TRIES + 1):
        try:
            return await connect(url, **options)
        except InvalidMessage:
            if attempt == HANDSHAKE_TRIES:
                raise
            await asyncio.sleep(0.5 * attempt)


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any):
    """`async with opened(url)`: connect_again, closed on the way out (connect_cycles' opener)."""
    socket = await connect_again(url, **options)
    try:
        yield socket
    finally:
        await socket.close()


def _probe(abuser: Abuser, name: str, run: Callable[[], None]) -> None:
    started = time.monotonic()
    try:
        run()
        abuser.passed.append(name)
    except BaseException:  # noqa: BLE001 - every probe reports; the test fails listing them all
        abuser.failures[name] = traceback.format_exc()
    abuser.spans[name] = (started, time.monotonic())


def request_bodies(abuser: Abuser) -> None:
    for chunked in (False, True):
        response, sent = post_huge(abuser.port, "/api/jobs/", chunked=chunked)
        assert response.startswith(b"HTTP/1.1 413") and b"4194304 bytes" in response, (chunked, response[:200])
        assert sent < GIGABYTE // 4, (chunked, sent)


async def ping_flood_under_load(url: str, count: int = 3000, *, opener=connect) -> None:
    """test_ws_abuse.ping_flood, except that a loaded web process may close the socket (4429, more than
    WS_INBOX_MAX messages waiting) before it answered a single ping: what is asserted is the close, and
    that nothing but pongs, then rate-limit errors, came before it."""
    async with opener(url, max_size=None) as socket:
        await asyncio.wait_for(socket.recv(), 10)  # the snapshot
        try:
            await asyncio.gather(*(socket.send("ping" if n % 2 else '{"type":"ping"}') for n in range(count)))
        except ConnectionClosed:
            pass  # closed while the flood was still being sent
        answers: list[str] = []
        try:
            while True:
                answers.append(await asyncio.wait_for(socket.recv(), 30))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4429, closed
        pongs = [a for a in answers if a in ("pong", '{"type": "pong"}')]
        assert len(pongs) < 200 and answers[:len(pongs)] == pongs, answers[:5]
        assert all('"rate limit' in a for a in answers[len(pongs):]), answers[len(pongs):][:3]


def websocket_abuse(abuser: Abuser) -> None:
    """Junk and oversize frames, a ping flood and a never-reading client at once, then connect cycles."""
    async def run() -> dict[str, BaseException]:
        named = {"junk frames": junk_frames, "oversize frames": oversize_frames,
                 "ping flood": ping_flood_under_load, "never reads": never_reads}
        outcomes = await asyncio.gather(*(probe(abuser.ws_url, opener=opened) for probe in named.values()),
                                        return_exceptions=True)
        failed = {name: outcome for name, outcome in zip(named, outcomes) if isinstance(outcome, BaseException)}
        try:
            await connect_cycles(abuser.ws_url, cycles=CONNECT_CYCLES, opener=opened)
        except Exception as exc:  # noqa: BLE001 - reported with the others
            failed["connect cycles"] = exc
        return failed

    failed = asyncio.run(asyncio.wait_for(run(), 150))
    assert not failed, {name: "".join(traceback.format_exception(exc)) for name, exc in failed.items()}


def socket_cap(abuser: Abuser, extra: int = 5) -> None:
    """One user's sockets over the cap are closed with 4429 (run after the other websocket probes).

    The alone test counts exactly; here the probes before may still hold a slot or two for a moment (a web
    process under load notices a disconnect late), so: never more than the cap open, every refused socket
    closed with 4429, and at least `extra` refused."""
    async def run() -> None:
        held, refused = [], []
        try:
            for _ in range(abuser.sockets_per_user + extra):
                socket = await connect_again(abuser.ws_url, open_timeout=10)
                try:
                    assert '"status"' in await asyncio.wait_for(socket.recv(), 10)
                    held.append(socket)
                except ConnectionClosed as closed:
                    refused.append(closed.rcvd.code if closed.rcvd else None)
            await asyncio.sleep(1)  # a refusal may come just after the snapshot
            for socket in list(held):
                if socket.close_code is not None:
                    held.remove(socket)
                    refused.append(socket.close_code)
            assert len(held) <= abuser.sockets_per_user and len(refused) >= extra, (len(held), refused)
            assert set(refused) == {4429}, refused
        finally:
            await asyncio.gather(*(socket.close() for socket in held))

    asyncio.run(asyncio.wait_for(run(), 60))


def sse_cap(abuser: Abuser) -> None:
    """One user's SSE streams over the cap: the one past it is refused with 429. Project streams, which stay
    open (a finished job's stream ends at once and gives its slot back)."""
    async def run() -> None:
        url = f"{abuser.base}/api/projects/{abuser.project_id}/stream/"
        async with httpx.AsyncClient(timeout=20, headers=abuser.headers()) as http:
            opened = []
            try:
                for _ in range(abuser.sse_streams_per_user):
                    response = await http.send(http.build_request("GET", url), stream=True)
                    assert response.status_code == 200, response.status_code
                    opened.append(response)
                refused = await http.get(url)
                assert refused.status_code == 429, (refused.status_code, refused.text[:200])
            finally:
                for response in opened:
                    await response.aclose()

    asyncio.run(asyncio.wait_for(run(), 60))


def login_guesses(abuser: Abuser) -> None:
    """Guesses from 127.0.0.3 are refused with 429 from the limit on; an honest user on 127.0.0.4 logs in."""
    def client(source: str) -> httpx.Client:
        return httpx.Client(base_url=abuser.base, timeout=30, transport=httpx.HTTPTransport(local_address=source))

    with client("127.0.0.3") as attacker:
        statuses = [attacker.post("/api/auth/token/", json={"username": abuser.login_username,
                                                             "password": f"guess{n}"}).status_code
                    for n in range(LOGIN_GUESSES)]
    first_429 = statuses.index(429)
    assert set(statuses[:first_429]) == {400} and set(statuses[first_429:]) == {429}, statuses
    with client("127.0.0.4") as honest:
        response = honest.post("/api/auth/token/", json={"username": abuser.honest_username,
                                                          "password": abuser.honest_password})
    assert response.status_code == 200 and response.json()["token"], response.text[:200]


def job_size(abuser: Abuser) -> None:
    """A script too long to narrate and a video too large are 400s naming the limit; no job is made."""
    with httpx.Client(base_url=abuser.base, timeout=30, headers=abuser.headers()) as api:
        project = api.post("/api/projects/", json={"name": "huge", "script": " ".join(["a"] * 50_000)})
        assert project.status_code == 201, project.text[:200]
        body = {"project_id": project.json()["id"], "job_type": "full_video"}
        refused = api.post("/api/jobs/", json=body)
        assert refused.status_code == 400 and "JOB_MAX_SCENE_S" in refused.json()["script"][0], refused.text[:300]
        api.patch(f"/api/projects/{project.json()['id']}/",
                  json={"script": "\n\n".join(" ".join(["a"] * 250) for _ in range(10))})
        big = api.post("/api/jobs/", json={**body, "params": {"width": 1920, "height": 1080, "fps": 60,
                                                              "rate_wpm": 250}})
        assert big.status_code == 400 and "JOB_MAX_VIDEO_PIXELS" in big.json()["params"][0], big.text[:300]
        listed = api.get(f"/api/jobs/?project_id={project.json()['id']}")
        assert listed.status_code == 200 and listed.json()["count"] == 0, listed.text[:200]


def create_throttle(abuser: Abuser) -> None:
    """Job creations past the per-user rate are 429s with a Retry-After, whatever the body."""
    with httpx.Client(base_url=abuser.base, timeout=30, headers=abuser.headers(abuser.throttled_token)) as api:
        answers = [api.post("/api/jobs/", json={}) for _ in range(THROTTLE_POSTS)]
    statuses = [r.status_code for r in answers]
    first_429 = statuses.index(429)
    assert first_429 >= 50 and set(statuses[:first_429]) == {400} and set(statuses[first_429:]) == {429}, statuses
    assert int(answers[-1].headers["Retry-After"]) > 0


def cross_user(abuser: Abuser) -> None:
    """Every endpoint and socket on another user's project and job is a 404 / 4404."""
    leaks: list[Any] = []
    with httpx.Client(base_url=abuser.base, timeout=30, headers=abuser.headers()) as api:
        for name, method, path, body in endpoints(abuser.victim_project_id, abuser.victim_job_id):
            if name in ("project-create", "job-create", "project-list", "job-list"):
                continue  # not about the victim's objects
            response = api.request(method.upper(), path, json=body)
            if response.status_code != 404:
                leaks.append((name, response.status_code))
        stream = api.get(f"/api/jobs/{abuser.victim_job_id}/stream/")
        if stream.status_code != 404:
            leaks.append(("job-stream", stream.status_code))
        huge_page = api.get("/api/jobs/", params={"page": "9" * 5000})
        if huge_page.status_code != 400:
            leaks.append(("page of 5,000 digits", huge_page.status_code))
    for url in (f"ws://127.0.0.1:{abuser.port}/ws/jobs/{abuser.victim_job_id}/?token={abuser.token}",
                f"ws://127.0.0.1:{abuser.port}/ws/projects/{abuser.victim_project_id}/?token={abuser.token}"):
        code, received = asyncio.run(ws_close_code(url))
        if code != 4404 or received:
            leaks.append((url, code, received[:1]))
    assert leaks == [], leaks


def job_finished(abuser: Abuser, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=abuser.base, timeout=30, headers=abuser.headers()) as api:
        while api.get(f"/api/jobs/{abuser.job_id}/").json()["status"] not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"the abuser's job {abuser.job_id} did not finish"
            time.sleep(0.5)


PROBES: dict[str, Callable[[Abuser], None]] = {
    "request bodies of 1 GB": request_bodies,
    "login guessing": login_guesses,
    "job size limits": job_size,
    "job-create throttle": create_throttle,
    "cross-user access": cross_user,
    "SSE streams per user": sse_cap,
}


class AbuseUnderLoad(threading.Thread):
    """Runs every probe at once (the websocket probes, then the socket cap, in one line of their own)."""

    def __init__(self, abuser: Abuser) -> None:
        super().__init__(name="soak-abuse", daemon=True)
        self.abuser = abuser

    def run(self) -> None:
        threads = [threading.Thread(target=_probe, args=(self.abuser, name, lambda p=probe: p(self.abuser)),
                                    daemon=True) for name, probe in PROBES.items()]

        def sockets() -> None:
            # The websocket probes count the answers to their own frames: the job's pushes must be over.
            _probe(self.abuser, "the abuser's job finishes", lambda: job_finished(self.abuser))
            _probe(self.abuser, "websocket junk, oversize, floods, never-reading, connect cycles",
                   lambda: websocket_abuse(self.abuser))
            _probe(self.abuser, "websockets per user", lambda: socket_cap(self.abuser))

        threads.append(threading.Thread(target=sockets, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(200)
