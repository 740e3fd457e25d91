"""The `ssh` measurement backend against the loopback sshd: batched sweeps, several hosts, resume after a drop."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from hw_prune.errors import RemoteError
from hw_prune.hw.backends import SimBackend, get_backend
from hw_prune.hw.boards import load_board
from hw_prune.layers import LayerSpec, extract_layer_specs
from hw_prune.models import build_builtin


@pytest.fixture
def two_hosts(sshd, tmp_path):
    """The one loopback board under two names, as two boards of one kind; both host keys known."""
    kh = tmp_path / "known_hosts"
    line = sshd.known_hosts.read_text()
    kh.write_text(line + line.replace("[127.0.0.1]", "[localhost]"))
    return [sshd.target, sshd.target.replace("127.0.0.1", "localhost")], kh


def _backend(sshd, hosts, kh, tmp_path, agent_backend="sim", **kw):
    return get_backend("ssh", "zcu104", hosts=hosts, key=str(sshd.user_key), known_hosts=str(kh),
                       remote_python=sys.executable, agent_backend=agent_backend,
                       remote_dir=str(tmp_path / "board"), cache_dir=tmp_path / "cache", **kw)


def _specs(name="resnet20"):
    return extract_layer_specs(build_builtin(name, 10, (1, 3, 32, 32)), (1, 3, 32, 32))


def test_sim_sweep_over_two_hosts_matches_local_simulator(sshd, two_hosts, tmp_path):
    hosts, kh = two_hosts
    be = _backend(sshd, hosts, kh, tmp_path, batch_size=3)
    assert be.name == "ssh" and be.simulated is True
    specs = _specs()
    got = be.measure_layers(specs, runs=10)
    ref = SimBackend(load_board("zcu104")).measure_layers(specs, runs=10)
    assert [g.latency_ms for g in got] == pytest.approx([r.latency_ms for r in ref], rel=1e-12)
    sweep = be.last_sweep
    assert sweep["batches"] >= 2 and sweep["batches_done"] == sweep["batches"]
    assert sweep["hosts_used"] == sorted(hosts)          # the sweep really was spread over both
    assert sweep["measured"] == sweep["unique"] < len(specs)  # duplicates are measured once
    again = be.measure_layers(specs, runs=10)
    assert be.last_sweep["measured"] == 0 and be.last_sweep["from_cache"] == sweep["unique"]
    assert [a.latency_ms for a in again] == [g.latency_ms for g in got]
    prov = be.provenance()
    assert prov["backend"] == "ssh" and prov["simulated"] is True and prov["agent_backend"] == "sim"


def test_measure_model_over_ssh(sshd, two_hosts, tmp_path):
    hosts, kh = two_hosts
    model = build_builtin("mobilenetv2-small", 10, (1, 3, 32, 32))
    m = _backend(sshd, hosts[:1], kh, tmp_path).measure_model(model, (1, 3, 32, 32), runs=30)
    ref = SimBackend(load_board("zcu104")).measure_model(model, (1, 3, 32, 32), runs=30)
    assert m.backend == "ssh" and m.simulated is True and m.fps == pytest.approx(ref.fps, rel=1e-9)
    real = _backend(sshd, hosts[:1], kh, tmp_path, agent_backend="onnxruntime").measure_model(
        model, (1, 3, 32, 32), runs=30)
    assert real.simulated is False and real.fps > 0 and real.latency_ms <= real.p99_ms
    assert real.provenance["host"] == hosts[0] and real.provenance["model_sha256"]


def test_sweep_resumes_after_the_board_drops(sshd, two_hosts, tmp_path):
    hosts, kh = two_hosts
    specs = [LayerSpec("conv", c, c + 8, 3, 1, 1, 16, 16, 16, 16, f"c{c}") for c in range(8, 8 + 8 * 10, 8)]
    be = _backend(sshd, hosts[:1], kh, tmp_path, agent_backend="onnxruntime", batch_size=1)
    errors: list[BaseException] = []

    def sweep():
        try:
            be.measure_layers(specs, runs=300)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=sweep)
    t.start()
    cache = be._cache_file(300)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not cache.is_file() or len(cache.read_text().splitlines()) < 2):
            time.sleep(0.05)
        sshd.kill()
        t.join(timeout=90)
    finally:
        sshd.start()
    assert not t.is_alive()
    assert errors and isinstance(errors[0], RemoteError), errors
    msg = str(errors[0])
    assert "rerun resumes" in msg and "\n" not in msg
    done_before = len(cache.read_text().splitlines())
    assert 2 <= done_before < len(specs)
    got = be.measure_layers(specs, runs=300)
    assert be.last_sweep["from_cache"] == done_before
    assert be.last_sweep["measured"] == len(specs) - done_before
    assert len(got) == len(specs) and all(g.latency_ms > 0 for g in got)
    # bigger convs take longer on a real CPU: the timings are not made up
    assert got[-1].latency_ms > got[0].latency_ms


def test_no_host_is_a_user_error(tmp_path):
    from hw_prune.errors import UserError

    with pytest.raises(UserError, match="--host"):
        get_backend("ssh", "zcu104", hosts=[])


def test_measure_command_over_ssh_uses_the_board_files_ssh_defaults(sshd, tmp_path):
    """A user's board YAML names user, port, remote dir and Python; `--host` then needs only the address."""
    import yaml

    from tests.conftest import ROOT, run_cli

    data = yaml.safe_load((ROOT / "boards" / "zcu104.yaml").read_text())
    data["name"] = "my-zcu104"
    data["ssh"] = {"user": sshd.target.split("@")[0], "port": sshd.port, "remote_dir": str(tmp_path / "board"),
                   "python": sys.executable}
    board = tmp_path / "my-zcu104.yaml"
    board.write_text(yaml.safe_dump(data))
    common = ["measure", "--json", "--model", "resnet20", "--board", board, "--runs", "20"]
    res = run_cli(*common, "--backend", "ssh", "--host", "127.0.0.1", "--key", sshd.user_key,
                  "--known-hosts", sshd.known_hosts, env={"HW_PRUNE_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    ssh = res.json()
    sim = run_cli(*common, "--backend", "sim").json()
    assert ssh["simulated"] is True and ssh["provenance"]["backend"] == "ssh"
    assert ssh["provenance"]["host"] == sshd.target
    assert ssh["fps"] == pytest.approx(sim["fps"], rel=1e-9)
    assert list((tmp_path / "board").iterdir()) == []  # the per-run folder was removed
