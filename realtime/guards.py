"""The limits one socket lives under, as a mixin of the status consumers (realtime/consumers.py).

- a message budget: excess messages get `{"type": "error"}`, and a socket that keeps on is closed (4429);
- a cap on the client's messages waiting for the consumer (patches.channels_consumer), closed with 4429;
- a cap on one user's sockets in this process (4429 for the one over it);
- re-authorisation: the socket joins its user's group and answers `auth.recheck` (realtime/reauth.py);
- a quiet socket watching an unfinished job re-reads the job's `seq` and fills a gap (a lost final push).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.db import database_sync_to_async

from jobs import states

from . import reauth
from .history import latest_seqs
from .limits import CLOSE_TOO_MANY, MessageBudget, registry, websocket_limits

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
_sweeper: asyncio.Task[None] | None = None


@database_sync_to_async
def _credentials_stand(**kwargs: Any) -> bool:
    return reauth.credentials_stand(**kwargs)


class SocketGuards:
    """Mixin for JobStatusConsumer: budget, caps, re-authorisation and the quiet-socket check."""

    inbox_client_limit = websocket_limits().INBOX_MAX

    def init_guards(self) -> None:
        limits = self.limits = websocket_limits()
        self.budget = MessageBudget(size=limits.MESSAGES_BURST, refill=limits.MESSAGES_PER_S)
        self.closing = False  # closed by a guard: later messages get no answer
        self.registered = False
        self.open_jobs: set[str] = set()  # jobs this socket watches that were not finished when last heard of
        self.last_heard = time.monotonic()

    async def close_for(self, code: int, why: str) -> None:
        """Close the socket once with `code` (4401, 4404, 4429); `why` goes to the log."""
        if self.closing:
            return
        self.closing = True
        self.release_socket()  # no longer counts against its user's sockets, nor watched for quiet
        logger.info("websocket closed with %s: %s", code, why)
        await self.close(code=code)

    # --- admission --------------------------------------------------------------------------------------
    async def admit_socket(self, user: Any) -> bool:
        """Register the authorised socket (False, closed with 4429, when its user has too many here)."""
        if not registry.add(user.pk, self, self.limits.SOCKETS_PER_USER):
            await self.close_for(CLOSE_TOO_MANY, f"user {user.pk} has {self.limits.SOCKETS_PER_USER} sockets open")
            return False
        self.registered = True
        group = reauth.user_group_name(user.pk)
        self.groups.append(group)  # channels leaves it on disconnect
        await self.channel_layer.group_add(group, self.channel_name)
        _ensure_sweeper(self.limits.QUIET_CHECK_S)
        return True

    def release_socket(self) -> None:
        if self.registered:
            registry.remove(self.user.pk, self)
            self.registered = False

    async def admit_message(self, cost: float) -> bool:
        """Spend `cost` from the budget; answer an error (or close after STRIKES of them) when it is spent."""
        if self.budget.spend(cost):
            return True
        if self.budget.strikes > self.limits.STRIKES:
            await self.close_for(CLOSE_TOO_MANY, "kept sending over its message budget")
        else:
            await self.send_error(f"rate limit: at most {self.limits.MESSAGES_PER_S:g} messages a second "
                                  "(refresh and resume count 5); keep sending and the socket is closed (4429)")
        return False

    async def websocket_overflow(self, message: dict[str, Any]) -> None:
        """Too many of the client's messages wait for this consumer (patches.channels_consumer)."""
        await self.close_for(CLOSE_TOO_MANY, f"more than {self.inbox_client_limit} messages waiting")

    # --- re-authorisation ---------------------------------------------------------------------------------
    async def auth_recheck(self, event: dict[str, Any]) -> None:
        """Credentials or ownership changed somewhere: close unless they still stand (realtime/reauth.py)."""
        if not self.authorized or self.closing:
            return
        from .middleware import token_from_scope

        token_key = token_from_scope(self.scope) if self.scope.get("auth_method") == "token" else None
        session = self.scope.get("session")
        session_key = getattr(session, "session_key", None) if token_key is None else None
        gone = (token_key and token_key == event.get("token_key")) or (
            session_key and session_key == event.get("session_key"))
        if gone or not await _credentials_stand(user_id=self.user.pk, auth_method=self.scope.get("auth_method"),
                                                token_key=token_key, session_key=session_key):
            await self.close_for(CLOSE_UNAUTHENTICATED, f"user {self.user.pk}'s credentials were revoked")
        elif await self.load_snapshots(self.user) is None:
            await self.close_for(CLOSE_NOT_FOUND, f"user {self.user.pk} no longer owns what the socket watches")

    # --- the quiet-socket check -------------------------------------------------------------------------
    def heard(self, message: dict[str, Any]) -> None:
        """Note a status or artifact message sent to the client (its job is open unless the status is final;
        an artifact message, which has no status, comes from a running job)."""
        self.last_heard = time.monotonic()
        if message.get("status") in states.TERMINAL:
            self.open_jobs.discard(message["job_id"])
        else:
            self.open_jobs.add(message["job_id"])


def _ensure_sweeper(interval_s: float) -> None:
    global _sweeper
    # get_loop(): a task of a loop that was closed (one test's loop, in tests) never reports done.
    if _sweeper is None or _sweeper.done() or _sweeper.get_loop() is not asyncio.get_running_loop():
        _sweeper = asyncio.ensure_future(_sweep_quiet_sockets(interval_s))


async def _sweep_quiet_sockets(quiet_s: float) -> None:
    """While this process has sockets: every third of `quiet_s`, read the seq of every unfinished job that a
    socket has heard nothing about for `quiet_s` (one query), and have the sockets that are behind catch up."""
    while registry.by_user:
        await asyncio.sleep(quiet_s / 3)
        try:
            await _check_quiet(quiet_s)
        except Exception:  # noqa: BLE001 - the database may be away; the next round tries again
            logger.warning("quiet-socket check failed", exc_info=True)


async def _check_quiet(quiet_s: float) -> None:
    now = time.monotonic()
    quiet = [c for c in registry.all() if c.open_jobs and now - c.last_heard > c.limits.QUIET_CHECK_S and not c.closing]
    if not quiet:
        return
    seqs = await latest_seqs(sorted({job for consumer in quiet for job in consumer.open_jobs}))
    for consumer in quiet:
        consumer.last_heard = now
        behind = [job for job in consumer.open_jobs if seqs.get(job, 0) > consumer.last_seq.get(job, 0)]
        if behind:
            # Through the socket's own channel, so the catch-up runs in turn with its live messages.
            try:
                await consumer.channel_layer.send(consumer.channel_name, {"type": "job.catchup", "job_ids": behind})
            except Exception:  # noqa: BLE001 - that socket is gone; the others still get theirs
                logger.debug("quiet-socket catch-up not delivered", exc_info=True)
