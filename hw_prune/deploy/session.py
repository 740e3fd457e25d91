"""An SSH session to a board (paramiko) that fails with one clear line instead of a traceback.

Security choices: host keys are checked against known_hosts and an unknown key is refused unless the
user explicitly passes --trust-new-host (then it is recorded); keys come from --key or the agent; a
password is read only from $HW_PRUNE_SSH_PASSWORD or an interactive prompt and never stored; every
remote command is built from an argv list quoted with shlex, so paths and names cannot inject shell.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import logging
import os
import posixpath
import re
import shlex
import socket
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import paramiko

from hw_prune.errors import RemoteError

PASSWORD_ENV = "HW_PRUNE_SSH_PASSWORD"
# paramiko logs transport failures itself; we report them as one line, so keep its records off stderr
logging.getLogger("paramiko").addHandler(logging.NullHandler())
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


@dataclass(frozen=True)
class HostSpec:
    user: str
    host: str
    port: int = 22

    def __str__(self) -> str:
        return f"{self.user}@{self.host}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH (and paramiko) name this host in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


_HOST_RE = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$")


def parse_host(text: str, default_user: str | None = None, default_port: int = 22) -> HostSpec:
    """Parse USER@HOST[:PORT] (USER falls back to the board's default user)."""
    m = _HOST_RE.match(str(text).strip())
    if not m:
        raise RemoteError(f"--host '{text}' is not USER@HOST[:PORT]; e.g. xilinx@192.168.2.99 or root@127.0.0.1:2222")
    user = m.group("user") or default_user
    if not user:
        raise RemoteError(f"--host '{text}' names no user and the board has no default; use USER@HOST[:PORT]")
    port = int(m.group("port")) if m.group("port") else default_port
    if not 0 < port < 65536:
        raise RemoteError(f"--host '{text}': port {port} is out of range; use 1..65535")
    return HostSpec(user, m.group("host").strip("[]"), port)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, e.g. 'ssh-ed25519 SHA256:abc...'."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown hosts unless trust_new_host; when trusting, append the key to known_hosts."""

    def __init__(self, known_hosts: Path, trust_new_host: bool) -> None:
        self.known_hosts = known_hosts
        self.trust = trust_new_host

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        fp = fingerprint(key)
        if not self.trust:
            raise RemoteError(f"host key of {hostname} is unknown ({fp}) and not in {self.known_hosts}; verify the "
                              "fingerprint on the board, then rerun with --trust-new-host to record it "
                              "(or pass --known-hosts FILE)")
        try:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        except OSError as e:
            raise RemoteError(f"cannot record the host key of {hostname} in {self.known_hosts}: {e.strerror}; "
                              "pass a writable --known-hosts FILE") from None
        client.get_host_keys().add(hostname, key.get_name(), key)


class SSHSession:
    """One connection to one board. Use as a context manager; all failures raise RemoteError."""

    def __init__(self, host: HostSpec, key: str | None = None, known_hosts: str | None = None,
                 trust_new_host: bool = False, connect_timeout: float = 15.0, command_timeout: float = 600.0) -> None:
        self.host = host
        self.key = Path(key).expanduser() if key else None
        self.known_hosts = Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        self.trust_new_host = trust_new_host
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- connection -------------------------------------------------------------------------------
    def __enter__(self) -> "SSHSession":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        if self.key is not None and not self.key.is_file():
            raise RemoteError(f"--key {self.key} does not exist; pass the private key file for {self.host}")
        client = paramiko.SSHClient()
        if self.known_hosts.is_file():
            try:
                client.load_host_keys(str(self.known_hosts))
            except (OSError, paramiko.SSHException) as e:
                raise RemoteError(f"cannot read known_hosts {self.known_hosts}: {e}; fix or pass --known-hosts FILE") from None
        elif not self.trust_new_host:
            raise RemoteError(f"known_hosts file {self.known_hosts} does not exist, so the host key of {self.host.host} "
                              "cannot be checked; pass --known-hosts FILE or --trust-new-host to record it")
        client.set_missing_host_key_policy(_HostKeyPolicy(self.known_hosts, self.trust_new_host))
        password = os.environ.get(PASSWORD_ENV) or None
        try:
            self._connect(client, password)
        except paramiko.AuthenticationException:
            if password is None and sys.stdin is not None and sys.stdin.isatty():
                password = getpass.getpass(f"password for {self.host}: ")
                try:
                    self._connect(client, password)
                except paramiko.AuthenticationException:
                    client.close()
                    raise RemoteError(self._auth_msg()) from None
            else:
                client.close()
                raise RemoteError(self._auth_msg()) from None
        except RemoteError:
            client.close()
            raise
        except Exception as e:  # network / protocol: one clear line
            client.close()
            raise self._translate(e, "connecting") from None
        finally:
            password = None  # never kept
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)  # notice a dead board while a long command runs
        self.client = client

    def _connect(self, client: paramiko.SSHClient, password: str | None) -> None:
        client.connect(self.host.host, port=self.host.port, username=self.host.user,
                       key_filename=str(self.key) if self.key else None, password=password,
                       look_for_keys=self.key is None, allow_agent=True, timeout=self.connect_timeout,
                       banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout)

    def _auth_msg(self) -> str:
        how = f"key {self.key}" if self.key else "the ssh-agent / default keys"
        return (f"authentication failed for {self.host} using {how}; pass the right --key FILE (its public key must be "
                f"in the board's authorized_keys) or set {PASSWORD_ENV}")

    def _translate(self, e: BaseException, doing: str) -> RemoteError:
        h = f"{self.host.host}:{self.host.port}"
        if isinstance(e, RemoteError):
            return e
        if isinstance(e, paramiko.BadHostKeyException):
            return RemoteError(f"host key of {self.host.known_hosts_name} CHANGED: got {fingerprint(e.key)}, "
                               f"{self.known_hosts} has {fingerprint(e.expected_key)}; if the board was reinstalled "
                               "remove its old line from known_hosts, otherwise do not connect")
        if isinstance(e, paramiko.PasswordRequiredException):
            return RemoteError(f"key {self.key} is encrypted; add it to ssh-agent (ssh-add) and omit --key, "
                               "or use an unencrypted key")
        if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError) or isinstance(e, ConnectionRefusedError):
            return RemoteError(f"connection refused by {h}; check that sshd runs on the board and the port is right")
        if isinstance(e, (socket.timeout, TimeoutError)):
            return RemoteError(f"connection to {h} timed out while {doing}; check the address/network or raise --timeout")
        if isinstance(e, socket.gaierror):
            return RemoteError(f"cannot resolve host '{self.host.host}'; check the --host name")
        # paramiko reports a handshake that never finished either as a banner timeout or, when its
        # reader thread loses the race, as "No existing session" from the auth step that follows.
        if isinstance(e, paramiko.SSHException) and ("banner" in str(e).lower() or (
                doing == "connecting" and "no existing session" in str(e).lower())):
            return RemoteError(f"connection to {h} timed out waiting for the SSH banner ({self.connect_timeout:g} s); "
                               "check that sshd runs on that port, or raise --timeout")
        if isinstance(e, (EOFError, ConnectionResetError, BrokenPipeError)) or (
                isinstance(e, paramiko.SSHException) and doing != "connecting"):
            return RemoteError(f"connection to {h} dropped while {doing}; nothing was recorded as complete, "
                               "check the board and rerun")
        if isinstance(e, paramiko.SSHException):
            return RemoteError(f"SSH error with {h} while {doing}: {_first_line(e)}; check that it is an SSH server")
        if isinstance(e, OSError):
            return RemoteError(f"network error with {h} while {doing}: {e.strerror or _first_line(e)}; check the board "
                               "and rerun")
        return RemoteError(f"SSH failure with {h} while {doing}: {type(e).__name__}: {_first_line(e)}")

    def close(self) -> None:
        for obj in (self._sftp, self.client):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # closing a dead connection must not hide the real error
                pass
        self._sftp = None
        self.client = None

    @property
    def alive(self) -> bool:
        t = self.client.get_transport() if self.client else None
        return bool(t and t.is_active())

    def _transport(self) -> paramiko.Transport:
        t = self.client.get_transport() if self.client else None
        if t is None or not t.is_active():
            raise RemoteError(f"connection to {self.host.host}:{self.host.port} dropped; nothing was recorded as "
                              "complete, check the board and rerun")
        return t

    # -- commands ---------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float | None = None, what: str | None = None,
            stdin_data: bytes | None = None) -> tuple[int, str, str]:
        """Run argv (each element quoted with shlex) and return (exit code, stdout, stderr)."""
        cmd = shlex.join([str(a) for a in argv])
        what = what or f"running {posixpath.basename(str(argv[0]))}"
        limit = self.command_timeout if timeout is None else timeout
        try:
            chan = self._transport().open_session(timeout=self.connect_timeout)
            chan.settimeout(0.5)
            chan.exec_command(cmd)
            if stdin_data is not None:
                chan.sendall(stdin_data)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + limit
            while True:
                got = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed or not chan.get_transport().is_active():
                    break
                if time.monotonic() > deadline:
                    chan.close()
                    raise RemoteError(f"remote command on {self.host} timed out after {limit:g} s while {what}; "
                                      "raise --timeout or use fewer --runs")
                if not got:
                    time.sleep(0.01)
            t = chan.get_transport()
            if not chan.exit_status_ready() or t is None or not t.is_active() and chan.exit_status == -1:
                raise RemoteError(f"connection to {self.host.host}:{self.host.port} dropped while {what}; nothing "
                                  "was recorded as complete, check the board and rerun")
            code = chan.recv_exit_status()
            chan.close()
        except RemoteError:
            raise
        except Exception as e:
            raise self._translate(e, what) from None
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    # -- files ------------------------------------------------------------------------------------
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport())
                self._sftp.get_channel().settimeout(self.command_timeout)
            except RemoteError:
                raise
            except Exception as e:
                raise self._translate(e, "opening SFTP") from None
        return self._sftp

    def resolve(self, remote_path: str) -> str:
        """Expand a leading ~ (SFTP does not) and make the path absolute."""
        sftp = self.sftp()
        try:
            home = sftp.normalize(".")
        except Exception as e:
            raise self._translate(e, "resolving the home directory") from None
        if remote_path in ("~", ""):
            return home
        if remote_path.startswith("~/"):
            return posixpath.join(home, remote_path[2:])
        return remote_path if remote_path.startswith("/") else posixpath.join(home, remote_path)

    def makedirs(self, remote_dir: str) -> None:
        """mkdir -p over SFTP; a permission problem becomes 'remote dir not writable'."""
        sftp = self.sftp()
        parts = [p for p in remote_dir.split("/") if p]
        cur = "/" if remote_dir.startswith("/") else ""
        for p in parts:
            cur = posixpath.join(cur, p) if cur else p
            try:
                st = sftp.stat(cur)
                if not stat.S_ISDIR(st.st_mode or 0):
                    raise RemoteError(f"remote path {cur} on {self.host} exists and is not a directory; "
                                      "choose another --remote-dir")
                continue
            except FileNotFoundError:
                pass
            except (PermissionError, IOError) as e:
                if isinstance(e, RemoteError):
                    raise
                if not isinstance(e, PermissionError):
                    raise self._translate(e, f"checking {cur}") from None
            try:
                sftp.mkdir(cur)
            except PermissionError:
                raise RemoteError(f"remote dir {remote_dir} on {self.host} is not writable (cannot create {cur}); "
                                  "choose a writable --remote-dir or fix its permissions") from None
            except IOError as e:
                raise self._remote_io(e, remote_dir, f"creating {cur}") from None
            except Exception as e:
                raise self._translate(e, f"creating {cur}") from None

    def _remote_io(self, e: Exception, remote_dir: str, doing: str) -> RemoteError:
        if not self.alive:
            return self._translate(EOFError(), doing)
        return RemoteError(f"remote dir {remote_dir} on {self.host} is not writable ({doing}: {e}); "
                           "choose a writable --remote-dir or fix its permissions")

    def upload(self, local: str | Path, remote: str) -> None:
        try:
            self.sftp().put(str(local), remote)
        except PermissionError:
            raise RemoteError(f"remote dir {posixpath.dirname(remote)} on {self.host} is not writable; choose a "
                              "writable --remote-dir or fix its permissions") from None
        except RemoteError:
            raise
        except IOError as e:
            if not self.alive:
                raise self._translate(EOFError(), f"uploading {Path(local).name}") from None
            raise RemoteError(f"uploading {Path(local).name} to {remote} on {self.host} failed: {e}; check free "
                              "space and permissions on the board") from None
        except Exception as e:
            raise self._translate(e, f"uploading {Path(local).name}") from None

    def remove_tree(self, remote_dir: str) -> None:
        """Remove our per-run directory recursively over SFTP (best effort; never a shell `rm -rf`)."""
        if not self.alive:
            return
        sftp = self.sftp()

        def rm(d: str, depth: int = 0) -> None:
            if depth > 8:
                return
            try:
                entries = sftp.listdir_attr(d)
            except Exception:
                return
            for a in entries:
                p = posixpath.join(d, a.filename)
                try:
                    if stat.S_ISDIR(a.st_mode or 0):
                        rm(p, depth + 1)
                    else:
                        sftp.remove(p)
                except Exception:
                    pass
            try:
                sftp.rmdir(d)
            except Exception:
                pass

        rm(remote_dir)
