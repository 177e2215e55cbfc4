"""Re-authorising open sockets: a user's sockets re-check their credentials and ownership when these change.

Every authorised socket joins its user's group. A deleted API token, a deactivated user, a logout, or a
project given to another owner sends `auth.recheck` to that group once the change commits; each socket
then checks, in one short database read, that its token or session still stands for an active user who
still owns what it watches, and closes with 4401 or 4404 otherwise.
"""
from __future__ import annotations

import logging
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

RECHECK_EVENT = "auth.recheck"  # routed to the consumers' `auth_recheck`


def user_group_name(user_id: Any) -> str:
    """The group every authorised socket of one user joins."""
    return f"user_{user_id}"


def request_recheck(user_id: Any, *, session_key: str | None = None, token_key: str | None = None) -> None:
    """After the current transaction commits, ask every socket of `user_id` to re-authorise.

    `session_key` / `token_key` name credentials known to be gone: sockets using them close without asking
    the database (a logout's session row is deleted right after the signal, so a read could still see it).
    """
    message = {"type": RECHECK_EVENT, "session_key": session_key, "token_key": token_key}
    transaction.on_commit(lambda: _send(user_id, message))


def _send(user_id: Any, message: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group_name(user_id), message)
    except Exception:  # noqa: BLE001 - a lost recheck must not fail the logout or the admin change
        logger.exception("could not ask user %s's sockets to re-authorise", user_id)


def credentials_stand(*, user_id: Any, auth_method: str | None, token_key: str | None,
                      session_key: str | None) -> bool:
    """Whether the user is active and the token or session the socket was opened with still stands for them."""
    from django.contrib.auth import get_user_model

    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        return False
    if auth_method == "token":
        from rest_framework.authtoken.models import Token

        return bool(token_key) and Token.objects.filter(key=token_key, user_id=user_id).exists()
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return str(store.load().get("_auth_user_id")) == str(user_id)


# --- signal receivers (connected in RealtimeConfig.ready) -----------------------------------------------

def on_token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    request_recheck(instance.user_id, token_key=instance.key)


def on_user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not instance.is_active:
        request_recheck(instance.pk)


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None and getattr(request, "session", None) is not None:
        request_recheck(user.pk, session_key=request.session.session_key)


def on_project_saving(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk is None or kwargs.get("raw"):
        return
    instance._owner_before_save = sender.objects.filter(pk=instance.pk).values_list("owner_id", flat=True).first()


def on_project_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_owner_before_save", None)
    if not created and previous is not None and previous != instance.owner_id:
        request_recheck(previous)


def connect_signals() -> None:
    """Connect the receivers above (RealtimeConfig.ready)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_delete, post_save, pre_save
    from rest_framework.authtoken.models import Token

    from projects.models import Project

    post_delete.connect(on_token_deleted, sender=Token, dispatch_uid="realtime.reauth.token")
    post_save.connect(on_user_saved, sender=get_user_model(), dispatch_uid="realtime.reauth.user")
    user_logged_out.connect(on_logged_out, dispatch_uid="realtime.reauth.logout")
    pre_save.connect(on_project_saving, sender=Project, dispatch_uid="realtime.reauth.project_pre")
    post_save.connect(on_project_saved, sender=Project, dispatch_uid="realtime.reauth.project_post")
