"""A real S3-compatible server for the tests and benchmarks: moto's standalone server, run as a
subprocess on 127.0.0.1 with a random free port (what s3fs's and Dask's own test suites
use). Fixtures in ``conftest.py``: ``s3_server`` (session: the endpoint) and ``s3``
(per test: a fresh bucket and the AWS environment pointing at the server).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from bigseg.io.storage import local

START_TIMEOUT_S = 30.0

#: the environment every S3 test runs with: dummy credentials, the server's endpoint
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bigseg-test-key-id",
    "AWS_SECRET_ACCESS_KEY": "bigseg-test-secret-value",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: variables that would point the tests at a real account
CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE")


@dataclass
class S3Server:
    """A running moto server."""

    endpoint: str
    process: subprocess.Popen
    log_path: Path

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


@dataclass
class S3Bucket:
    """A fresh bucket on the test server."""

    endpoint: str
    name: str

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}" if key else f"s3://{self.name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(log_dir: Path) -> S3Server:
    """Start moto's server on a free port and wait until it answers."""
    port = free_port()
    log_path = log_dir / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with local.open_write(log_path) as log:  # the server's request log, read by benchmarks
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
    server = S3Server(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited ({proc.returncode}):\n{server.log()}")
        try:
            with urllib.request.urlopen(server.endpoint + "/moto-api/", timeout=1):
                return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    stop(server)
    raise RuntimeError(f"moto server did not answer within {START_TIMEOUT_S} s:\n{server.log()}")


def stop(server: S3Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


def environment(endpoint: str) -> dict[str, str]:
    """The AWS variables a test (and its Dask workers) runs with."""
    return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def create_bucket(endpoint: str) -> S3Bucket:
    """A new, empty bucket with a unique name."""
    import boto3

    name = f"bigseg-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name)
    return S3Bucket(endpoint, name)


class StripCreateOnly:
    """A small HTTP proxy in front of the server that drops ``If-None-Match`` from every
    request: a store that silently ignores create-only writes, as some S3-compatible
    servers do. ``endpoint`` is the proxy's URL; use it as the store's ``endpoint_url``."""

    DROPPED = "if-none-match"

    def __init__(self, upstream: str):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        dropped = self.DROPPED
        self.stripped = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != dropped}
                if len(headers) < len(self.headers):
                    proxy.stripped += 1
                headers["Host"] = up.netloc
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status, r.reason)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
