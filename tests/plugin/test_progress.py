"""Progress bars: drawn on an interactive terminal, silent in CI and in logs."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

SUITE = """
import pytest

@pytest.fixture(scope="session")
def trained(rtgov):
    with rtgov.progress("training the model", total=4) as bar:
        for epoch in range(4):
            bar.advance(loss=f"{1.0 / (epoch + 1):.3f}")
    return 1

def test_uses_it(trained):
    assert trained == 1
"""


def run(pytester, *, tty: bool, extra_env: dict[str, str]) -> str:
    pytester.makepyfile(test_suite=SUITE)
    env = {**os.environ, **extra_env}
    if "CI" not in extra_env:
        env.pop("CI", None)
    cmd = [sys.executable, "-m", "pytest", "--rtgov", "-p", "no:cacheprovider", "test_suite.py"]
    if not tty:
        done = subprocess.run(cmd, cwd=pytester.path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
        return done.stdout
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=pytester.path, env=env, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait() == 0
    return b"".join(chunks).decode(errors="replace")


def test_a_bar_is_drawn_on_a_terminal(pytester):
    assert "training the model" in run(pytester, tty=True, extra_env={})


def test_no_bar_without_a_terminal(pytester):
    out = run(pytester, tty=False, extra_env={})
    assert "training the model" not in out and "1 passed" in out


def test_no_bar_in_ci_even_on_a_terminal(pytester):
    from pytest_rtgov.core.keys import format_signer_key, generate_signer
    from pytest_rtgov.store.keys import add_to_keyring

    signer = generate_signer("ci.example/progress")  # CI requires a keyring key
    add_to_keyring(pytester.path / "rtgov.keyring", signer.verifier())
    env = {"CI": "true", "RTGOV_SIGNING_KEY": format_signer_key(signer)}
    out = run(pytester, tty=True, extra_env=env)
    assert "training the model" not in out and "1 passed" in out
