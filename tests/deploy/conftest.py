"""Deploy-test fixtures: one real sshd on loopback per session; the 'board' is this machine."""

from __future__ import annotations

import sys

import pytest

from tests.deploy.sshd import Sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def board_python() -> str:
    """The board's interpreter: this venv's Python has numpy and onnxruntime."""
    return sys.executable


@pytest.fixture
def ssh_args(sshd, board_python, tmp_path):
    """CLI flags that reach the loopback board, with a per-test remote base directory."""
    remote = tmp_path / "board"
    remote.mkdir()
    return ["--host", sshd.target, "--key", str(sshd.user_key), "--known-hosts", str(sshd.known_hosts),
            "--remote-python", board_python, "--remote-dir", str(remote)]
