"""A local S3 for the tests of shared storage (the stage store, the shared ledger): moto's
server on a free local port, reached through fsspec and s3fs as CI reaches a real bucket
(``AWS_ENDPOINT_URL``, credentials from the environment)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# moto's S3 in a process of its own, handling one request at a time: S3 decides each
# conditional write (If-None-Match, If-Match) atomically, where moto's threaded server
# checks and then puts. (In the test process, moto's app fails requests arriving from
# several threads at once.)
SERVER = """
import sys, threading
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
from werkzeug.serving import make_server
app, one_at_a_time = DomainDispatcherApplication(create_backend_app), threading.Lock()
def serialized(environ, start_response):
    with one_at_a_time:
        return list(app(environ, start_response))
make_server("127.0.0.1", int(sys.argv[1]), serialized, True,
            request_handler=MotoRequestHandler).serve_forever()
"""


def free_port() -> int:
    """A local TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_s3(bucket: str) -> Iterator[Any]:
    """A local S3 server with ``bucket`` for the block, the environment pointing botocore
    at it (no profile, token or config file of the machine's); yields a boto3 client.
    Skips where moto, s3fs or boto3 is not installed."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # its start, not a timing assertion
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        with pytest.MonkeyPatch.context() as patch:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
                patch.delenv(name, raising=False)
            patch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
            patch.setenv("AWS_ACCESS_KEY_ID", "testing")
            patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
            patch.setenv("AWS_CONFIG_FILE", os.devnull)
            patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
            client = boto3.client("s3")
            client.create_bucket(Bucket=bucket)
            yield client
    finally:
        server.terminate()
        server.wait(timeout=60)


def prefix_url(bucket: str, request: pytest.FixtureRequest) -> str:
    """This test's own prefix of ``bucket`` as an ``s3://`` URL."""
    return f"s3://{bucket}/{request.node.name.replace('[', '-').rstrip(']')}"


def keys_in(client: Any, url: str) -> list[str]:
    """The object names under ``url`` (``s3://bucket/prefix``), relative to it, as S3
    lists them (every page)."""
    bucket, _, rest = url[len("s3://") :].partition("/")
    prefix = rest + "/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))
