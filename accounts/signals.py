"""A user's API tokens are deleted when the password changes, the way Django ends their sessions.

Tokens are looked up on every request (no cache), so a deleted token, a deactivated user (even through
`QuerySet.update(is_active=False)`, which sends no signal) or a changed password is refused at once by every
web process. A password changed with `QuerySet.update(password=…)` sends no signal either: delete the
user's tokens in the same breath (`Token.objects.filter(user=…).delete()`).
"""
from __future__ import annotations

from typing import Any

_PASSWORD_CHANGED = "_vg_password_changed"


def _note_password_change(sender: Any, instance: Any, update_fields: Any = None, **_: Any) -> None:
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return  # a new user has no tokens; a save of other fields (last_login at each login) changes nothing
    stored = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    setattr(instance, _PASSWORD_CHANGED, stored is not None and stored != instance.password)


def _revoke_tokens(sender: Any, instance: Any, **_: Any) -> None:
    if instance.__dict__.pop(_PASSWORD_CHANGED, False):
        from rest_framework.authtoken.models import Token

        Token.objects.filter(user_id=instance.pk).delete()


def connect_token_revocation() -> None:
    """Called from AccountsConfig.ready."""
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_save, pre_save

    User = get_user_model()
    pre_save.connect(_note_password_change, sender=User, dispatch_uid="accounts.note_password_change")
    post_save.connect(_revoke_tokens, sender=User, dispatch_uid="accounts.revoke_tokens")
