"""Which addresses webhooks may call, and the retry schedule's promises (pure functions, no database)."""
from __future__ import annotations

import random

import pytest

from webhooks.conf import WebhookSettings
from webhooks.guard import UrlRefused, _parts, address_refusal
from webhooks.services import retry_delay_s


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.9", "private"),
    ("172.16.5.5", "private"), ("169.254.169.254", "metadata"), ("169.254.10.1", "link-local"),
    ("fe80::1", "link-local"), ("fd00:ec2::254", "metadata"), ("::ffff:127.0.0.1", "loopback"),
    ("0.0.0.0", "private"), ("100.64.0.1", "private"), ("100.100.100.200", "metadata"), ("fc00::5", "private"),
    ("224.0.0.1", "private"),
])
def test_address_refusal__refuses_non_public_addresses(address: str, reason: str) -> None:
    assert reason in (address_refusal(address) or "")


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:84e5", "8.8.8.8"])
def test_address_refusal__allows_public_addresses(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize("url, words", [
    ("ftp://example.com/x", "http or https"), ("https:///nohost", "no host"),
    ("https://user:pw@example.com/", "user name"), ("http://example.com:99999/", "not a valid URL"),
])
def test_webhook_url_parts__refuses_what_is_not_a_plain_http_url(url: str, words: str) -> None:
    with pytest.raises(UrlRefused, match=words):
        _parts(url)


def test_webhook_url_parts__keeps_path_query_and_default_port() -> None:
    assert _parts("HTTPS://Example.com/a/b?c=1") == ("https", "example.com", 443, "/a/b?c=1")
    assert _parts("http://example.com:8080") == ("http", "example.com", 8080, "/")


def test_retry_delay__default_schedule_keeps_the_contract_even_with_worst_jitter() -> None:
    # given the default settings, with jitter at its lowest and at its highest
    conf = WebhookSettings()
    for bound in (0.8, 1.2):
        class Edge(random.Random):
            def uniform(self, a: float, b: float) -> float:
                return bound

        delays = [retry_delay_s(attempt=n, conf=conf, rng=Edge()) for n in range(1, conf.max_attempts)]
        # then the first retry comes within 30 s, there are at least 8 attempts, spread over at least 12 h,
        # and each wait is longer than the one before until the cap
        assert delays[0] <= 30
        assert conf.max_attempts >= 8
        assert sum(delays) >= 12 * 3600
        assert all(b >= a for a, b in zip(delays, delays[1:]))


def test_retry_delay__jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {round(retry_delay_s(attempt=3, conf=WebhookSettings(), rng=rng), 3) for _ in range(20)}
    assert len(delays) > 10 and all(128 <= d <= 192 for d in delays)
