"""A throwaway OpenSSH server on 127.0.0.1 for the deploy tests (real sshd, real keys, real SFTP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "hw_prune-test", "-f", str(path)], check=True)
    return path


class Sshd:
    """sshd -D -f <tmp config>; start/stop by its own pid, and kill its session children (a dropped board)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = keygen(root / "host_ed25519")
        self.user_key = keygen(root / "user_ed25519")
        self.wrong_key = keygen(root / "wrong_ed25519")
        (root / "authorized_keys").write_text((root / "user_ed25519.pub").read_text())
        self.known_hosts = root / "known_hosts"
        kind, b64 = (root / "host_ed25519.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {kind} {b64}\n")
        self.host_pub_b64 = b64
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}",
            "StrictModes no", "UsePAM no", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "Subsystem sftp internal-sftp", "LogLevel ERROR",
            "MaxStartups 50", "MaxSessions 50", "ClientAliveInterval 0", "",
        ]))
        self.proc: subprocess.Popen | None = None
        self.log = root / "sshd.log"

    @property
    def target(self) -> str:
        return f"{os.environ.get('USER') or 'root'}@127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation dir sshd insists on
        except PermissionError:
            pass  # not root: sshd's own message (in the log quoted below) says what is missing
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    if c.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def _children(self, pid: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    def kill(self) -> None:
        """SIGKILL the daemon and its per-connection sshd processes (the connection drops mid-run)."""
        if self.proc is None:
            return
        todo, seen = [self.proc.pid], []
        while todo:
            p = todo.pop()
            seen.append(p)
            todo += self._children(p)
        for p in reversed(seen):
            try:
                if not Path(f"/proc/{p}/comm").read_text().startswith("sshd"):
                    continue  # only the server dies; the user's processes must notice on their own
            except OSError:
                continue
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
