"""Login pages under /accounts/: Django's auth views, password reset only where e-mail can be sent.

Without e-mail settings Django's default backend would "send" reset mails nowhere (or fail), and the
reset form would still answer every anonymous POST with a user lookup and a token: an open form that
does nothing useful.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

if settings.EMAIL_HOST:
    urlpatterns += [
        path("password_reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
        path("password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
        path("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
        path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    ]
