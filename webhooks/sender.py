"""One HTTP attempt of a delivery: connect to the checked address, POST, read a little, never follow."""
from __future__ import annotations

import time
from dataclasses import dataclass

import certifi
import urllib3

from .guard import Target, UrlRefused, resolve_target

RESPONSE_READ_LIMIT = 4096  # bytes of a receiver's answer we read (and keep 200 characters of)
USER_AGENT = "video-generation-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    refused: bool = False  # the URL now leads to a refused address: retrying is pointless

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


def _pool(target: Target, timeout_s: float) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s, total=timeout_s)
    if target.scheme == "https":
        # TCP to the checked address; TLS still verifies the certificate against the URL's host name.
        return urllib3.HTTPSConnectionPool(
            target.address, target.port, timeout=timeout, retries=False, maxsize=1,
            server_hostname=target.host, assert_hostname=target.host, cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def post(*, url: str, body: str, headers: dict[str, str], timeout_s: float) -> Outcome:
    """POST `body` to `url`; the outcome names the status or what went wrong (never raises)."""
    try:
        target = resolve_target(url)
    except UrlRefused as exc:
        return Outcome(None, f"refused: {exc}", refused=True)
    except LookupError as exc:
        return Outcome(None, f"dns: {exc}")
    started = time.monotonic()
    pool = _pool(target, timeout_s)
    try:
        response = pool.urlopen(
            "POST", target.path, body=body.encode(), redirect=False, retries=False, preload_content=False,
            assert_same_host=False,
            headers={**headers, "Host": _host_header(target), "Content-Type": "application/json",
                     "User-Agent": USER_AGENT},
        )
        try:
            answer = response.read(RESPONSE_READ_LIMIT, decode_content=False)
        finally:
            response.release_conn()
            response.close()
    except urllib3.exceptions.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:500])
    finally:
        pool.close()
    if time.monotonic() - started > timeout_s:
        return Outcome(response.status, f"answered after more than {timeout_s:g} s")
    error = "" if 200 <= response.status < 300 else answer.decode("utf-8", "replace")[:200]
    return Outcome(response.status, error)
