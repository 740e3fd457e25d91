"""One remote agent run: connect, upload the bundle to a fresh per-run directory, run, clean up."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from hw_prune.deploy.bundle import LocalBundle, agent_argv, parse_agent_output, remote_run_dir, upload_bundle
from hw_prune.deploy.session import HostSpec, SSHSession


@dataclass
class SSHOptions:
    """How to reach a board (what the CLI flags --key/--known-hosts/--trust-new-host/--timeout say)."""

    key: str | None = None
    known_hosts: str | None = None
    trust_new_host: bool = False
    timeout: float = 600.0

    def session(self, host: HostSpec) -> SSHSession:
        return SSHSession(host, key=self.key, known_hosts=self.known_hosts, trust_new_host=self.trust_new_host,
                          connect_timeout=min(20.0, self.timeout), command_timeout=self.timeout)


def run_bundle_remote(bundle: LocalBundle, host: HostSpec, opts: SSHOptions, python: str, remote_base: str,
                      backend: str, runs: int, keep: bool = False, cmd: str = "run",
                      agent_extra: Sequence[str] = (), tag: str = "deploy") -> dict[str, Any]:
    """Returns the agent's JSON plus timings (connect/upload/run/cleanup seconds) and the remote dir."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with opts.session(host) as s:
        timings["connect_s"] = time.perf_counter() - t0
        rdir = remote_run_dir(s.resolve(remote_base), tag)
        try:
            t1 = time.perf_counter()
            upload_bundle(s, bundle, rdir)
            timings["upload_s"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            code, out, err = s.run(agent_argv(python, rdir, cmd, backend, runs, opts.timeout, agent_extra),
                                   what=f"running the agent ({backend})")
            timings["run_s"] = time.perf_counter() - t2
            res = parse_agent_output(code, out, err, str(host))
        finally:
            if not keep:
                t3 = time.perf_counter()
                s.remove_tree(rdir)
                timings["cleanup_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    res["remote_dir"] = rdir
    res["kept"] = bool(keep)
    res["timings"] = timings
    return res
