"""A real S3-protocol server for tests: moto's standalone `moto_server` on a free loopback port, a bucket in
it, and a TCP proxy in front that a test can stop and start again (the store going away and coming back
without losing what it holds, which restarting moto, an in-memory server, would). A second, HTTP-aware
front refuses expired presigned URLs as S3 does, which moto does not."""
from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.processes import BIN, ProcessGroup, free_port

ACCESS_KEY, SECRET_KEY, REGION = "testing-key", "testing-secret", "us-east-1"


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `stop()` closes the listener and every open connection."""

    def __init__(self, target: tuple[str, int], port: int | None = None, upload_bytes_per_s: int | None = None) -> None:
        self.target, self.port = target, port or free_port()
        self.upload_bytes_per_s = upload_bytes_per_s  # slows client -> store traffic (uploads) down to this
        self.last_upload_at = 0.0  # monotonic time client -> store bytes last went through
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def uploading(self, within_s: float = 0.3) -> bool:
        """Whether a client is sending the store a request body right now (bytes passed within `within_s`)."""
        return time.monotonic() - self.last_upload_at < within_s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, up), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        rate = self.upload_bytes_per_s if up else None
        try:
            while data := source.recv(1024 if rate else 65536):
                if up:
                    self.last_upload_at = time.monotonic()
                if rate:
                    time.sleep(len(data) / rate)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# Per connection, not forwarded (RFC 9110 7.6.1); the front frames each body itself with Content-Length.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def presign_expired_at(query: str) -> datetime | None:
    """When a SigV4 presigned URL stops working (X-Amz-Date + X-Amz-Expires), or None if it is not one."""
    params = urllib.parse.parse_qs(query)
    if "X-Amz-Date" not in params or "X-Amz-Expires" not in params:
        return None
    signed = datetime.strptime(params["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return signed + timedelta(seconds=int(params["X-Amz-Expires"][0]))


class PresignExpiryFront:
    """An HTTP reverse proxy to `target` that answers 403 AccessDenied "Request has expired" to a presigned
    request (SigV4: X-Amz-Date and X-Amz-Expires in the query) whose lifetime has passed, and forwards
    everything else unchanged. It exists because moto (5.2.5) does not enforce presigned-URL expiry: this
    reproduces S3's rule so a test can see a URL stop working. Keep-alive safe (HTTP/1.1, every answer
    carries its length); one upstream connection per request."""

    def __init__(self, target: tuple[str, int], port: int | None = None) -> None:
        self.target, self.port = target, port or free_port()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PresignExpiryFront:
        handler = type("Handler", (_FrontHandler,), {"target": self.target})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class _FrontHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs and browsers use the store
    target: tuple[str, int]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # a line on stderr per request would drown the test output

    def _handle(self) -> None:
        expired_at = presign_expired_at(urllib.parse.urlsplit(self.path).query)
        now = datetime.now(timezone.utc)
        body = self._request_body()  # read even when refused: the connection's next request follows it
        if expired_at is not None and now > expired_at:
            self._expired(expired_at, now)
        else:
            self._forward(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = _handle

    def _request_body(self) -> bytes:
        """The whole request body, by Content-Length or de-chunked (it is forwarded with a length)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self, body: bytes) -> None:
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        has_body = "Content-Length" in self.headers or "Transfer-Encoding" in self.headers
        if has_body:
            headers = {name: value for name, value in headers.items() if name.lower() != "content-length"}
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self.target, timeout=30)
        try:
            # The Host header goes through as sent: it is part of what the client signed.
            upstream.request(self.command, self.path, body=body if has_body else None, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response_only(answer.status, answer.reason)  # the store's own Date and Server follow
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_BY_HOP and not (name.lower() == "content-length" and self._has_body(answer)):
                    self.send_header(name, value)
            if self._has_body(answer):
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self._has_body(answer):
                self.wfile.write(payload)
        finally:
            upstream.close()

    def _has_body(self, answer: http.client.HTTPResponse) -> bool:
        # A HEAD answer's Content-Length is the object's size, with no body: it passes through as it is.
        return self.command != "HEAD" and answer.status not in (204, 304) and answer.status >= 200

    def _expired(self, expired_at: datetime, now: datetime) -> None:
        """S3's answer, in its words and XML shape."""
        stamp = "%Y-%m-%dT%H:%M:%SZ"
        payload = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                   f"<Message>Request has expired</Message><Expires>{expired_at.strftime(stamp)}</Expires>"
                   f"<ServerTime>{now.strftime(stamp)}</ServerTime><RequestId>presign-front</RequestId></Error>").encode()
        self.send_response(403, "Forbidden")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


@dataclass
class S3Server:
    """moto_server plus the proxy; `endpoint` is the proxy's URL (what the code under test uses), and
    `presign_checked` the URL of a front that also refuses expired presigned URLs (PresignExpiryFront)."""

    group: ProcessGroup
    port: int
    proxy: TcpProxy
    front: PresignExpiryFront
    bucket: str = "artifacts"
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def endpoint(self) -> str:
        return self.proxy.url

    @property
    def presign_checked(self) -> str:
        return self.front.url

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, endpoint: str | None = None) -> Any:
        import boto3

        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.direct, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=REGION,
                            config=Config(signature_version="s3v4"))

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a process using this bucket (ARTIFACT_STORAGE=s3 and the AWS_* settings)."""
        return {"ARTIFACT_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": self.bucket, "AWS_S3_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_S3_REGION_NAME": REGION,
                **overrides}

    def storage(self, **overrides: str) -> dict[str, Any]:
        """STORAGES["artifacts"] for this process (the same settings code the processes run)."""
        from config.artifact_storage import storage_config

        return storage_config(self.env(**overrides))

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def empty(self) -> None:
        client = self.client()
        for key in self.keys():
            client.delete_object(Bucket=self.bucket, Key=key)


@contextlib.contextmanager
def moto_s3(*, check_credentials: bool = False) -> Iterator[S3Server]:
    """Start moto_server and the proxy, create the bucket; stop both afterwards.

    With `check_credentials` the server refuses requests that are not signed with an IAM user's key (moto's
    INITIAL_NO_AUTH_ACTION_COUNT: its first three calls create that user, key and policy). Presigned GETs
    fail in that mode (moto answers 500), so the default server accepts any key.
    """
    group = ProcessGroup()
    port = free_port()
    env = {"PATH": str(BIN), **({"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if check_credentials else {})}
    group.start("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or group.procs["moto"].poll() is not None:
                group.stop_all()
                raise RuntimeError(f"moto_server did not start:\n{group.log('moto')[-2000:]}") from None
            time.sleep(0.1)
    target = ("127.0.0.1", port)
    server = S3Server(group, port, TcpProxy(target).start(), PresignExpiryFront(target).start())
    if check_credentials:
        server.access_key, server.secret_key = _iam_user(server.direct)
    server.client().create_bucket(Bucket=server.bucket)
    try:
        yield server
    finally:
        server.proxy.stop()
        server.front.stop()
        group.stop_all()


def _iam_user(endpoint: str) -> tuple[str, str]:
    """An IAM user allowed everything, and its access key (the unauthenticated calls moto allows)."""
    import json

    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
                       region_name=REGION)
    iam.create_user(UserName="artifacts")
    key = iam.create_access_key(UserName="artifacts")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="artifacts", PolicyName="all", PolicyDocument=json.dumps(policy))
    return key["AccessKeyId"], key["SecretAccessKey"]
