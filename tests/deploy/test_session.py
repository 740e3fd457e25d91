"""SSHSession on the loopback sshd: argument quoting, timeouts, host parsing, host-key recording."""

from __future__ import annotations

import uuid

import pytest

from hw_prune.deploy.session import SSHSession, parse_host
from hw_prune.errors import RemoteError


def _session(sshd, **kw) -> SSHSession:
    kw.setdefault("key", str(sshd.user_key))
    kw.setdefault("known_hosts", str(sshd.known_hosts))
    return SSHSession(parse_host(sshd.target), **kw)


def test_parse_host():
    h = parse_host("xilinx@192.168.2.99")
    assert (h.user, h.host, h.port, h.known_hosts_name) == ("xilinx", "192.168.2.99", 22, "192.168.2.99")
    h = parse_host("root@127.0.0.1:2222")
    assert (h.port, h.known_hosts_name, str(h)) == (2222, "[127.0.0.1]:2222", "root@127.0.0.1:2222")
    assert parse_host("board.local", default_user="petalinux").user == "petalinux"
    for bad in ("", "a@b:c", "root@host;rm -rf /", "root@$(id)", "root@h:70000"):
        with pytest.raises(RemoteError):
            parse_host(bad, default_user="root")


def test_arguments_reach_the_board_literally(sshd, tmp_path):
    tag = uuid.uuid4().hex[:8]
    marker = tmp_path / f"pwned{tag}"
    nasty = [f"a b; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "'\"", "&& echo no |", "*", "~"]
    with _session(sshd) as s:
        code, out, _ = s.run(["printf", "%s\\n", *nasty])
    assert code == 0
    assert out.splitlines() == nasty
    assert not marker.exists()


def test_exit_code_stderr_and_command_timeout(sshd):
    with _session(sshd) as s:
        code, out, err = s.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
        assert (code, out, err) == (7, "out\n", "err\n")
        with pytest.raises(RemoteError, match="timed out after 1 s"):
            s.run(["sleep", "30"], timeout=1)
        assert s.run(["true"])[0] == 0  # the connection survives a timed-out command


def test_trust_new_host_records_the_key(sshd, tmp_path):
    kh = tmp_path / "nested" / "known_hosts"
    with pytest.raises(RemoteError, match="does not exist"):
        _session(sshd, known_hosts=str(kh)).connect()
    with _session(sshd, known_hosts=str(kh), trust_new_host=True) as s:
        assert s.run(["true"])[0] == 0
    assert f"[127.0.0.1]:{sshd.port}" in kh.read_text() and sshd.host_pub_b64 in kh.read_text()
    with _session(sshd, known_hosts=str(kh)) as s:  # recorded: no flag needed now
        assert s.run(["true"])[0] == 0


def test_missing_key_file(sshd, tmp_path):
    with pytest.raises(RemoteError, match="does not exist"):
        _session(sshd, key=str(tmp_path / "nope")).connect()


def test_password_is_read_from_the_environment_only(sshd, monkeypatch):
    # the loopback sshd allows keys only, so a password from the environment is offered and refused
    monkeypatch.setenv("HW_PRUNE_SSH_PASSWORD", "not-the-password")
    with pytest.raises(RemoteError, match="authentication failed"):
        _session(sshd, key=str(sshd.wrong_key)).connect()


def test_remote_dir_creation_and_cleanup(sshd, tmp_path):
    base = tmp_path / "a b" / "c;d"
    with _session(sshd) as s:
        s.makedirs(str(base / "run"))
        (tmp_path / "f.txt").write_text("x")
        s.upload(tmp_path / "f.txt", str(base / "run" / "f.txt"))
        (base / "run" / "sub").mkdir()
        (base / "run" / "sub" / "g").write_text("y")
        assert (base / "run" / "f.txt").read_text() == "x"
        s.remove_tree(str(base / "run"))
    assert not (base / "run").exists() and base.is_dir()
