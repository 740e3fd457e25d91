"""`hw_prune deploy` end to end against a real OpenSSH server on 127.0.0.1 (the board is this machine)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, assert_user_error, run_cli

FAST = ["--backend", "sim", "--runs", "5"]


def _fingerprint(pub_b64: str) -> str:
    return base64.b64encode(hashlib.sha256(base64.b64decode(pub_b64)).digest()).decode().rstrip("=")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """resnet20 with BatchNorm statistics taken from data, so its predictions differ between images."""
    from hw_prune.data import load_data
    from hw_prune.models.io import load_model, save_model

    torch.manual_seed(0)
    b = load_model("resnet20", None, 10, (1, 3, 32, 32))
    x = load_data("synthetic:tiny", (1, 3, 32, 32)).train.x[:128]
    b.model.train()
    with torch.no_grad():
        for _ in range(3):
            b.model(x)
    b.model.eval()
    return save_model(b, tmp_path_factory.mktemp("model") / "r20.pt")


def test_deploy_over_ssh_agrees_with_local_run(sshd, ssh_args, saved_model, tmp_path):
    out = tmp_path / "run"
    res = run_cli("deploy", "--json", "--model", saved_model, "--board", "zcu104", "--backend", "onnxruntime",
                  "--data", "synthetic:tiny", "--samples", "128", "--runs", "200", "-o", out, *ssh_args)
    assert res.returncode == 0, res.stderr
    r = res.json()
    for k in ("fps", "latency_ms", "p90_ms", "p99_ms", "fps_mt", "top1", "backend", "simulated", "host"):
        assert k in r, k
    assert r["backend"] == "onnxruntime" and r["simulated"] is False and r["host"] == sshd.target
    assert r["latency_ms"] <= r["p90_ms"] <= r["p99_ms"]
    saved = json.loads((out / "result.json").read_text())
    assert saved["complete"] is True and saved["provenance"]["model_sha256"] == r["model_sha256"]
    assert saved["provenance"]["board"] == "zcu104" and saved["provenance"]["host"] == sshd.target
    # the per-run directory on the board was removed (no --keep)
    assert not Path(r["remote_dir"]).exists()

    # top-1 computed on the board equals torch's top-1 on the same images (independent of the agent)
    from hw_prune.models.io import load_model

    z = np.load(out / "bundle" / "sample.npz")
    net = load_model(str(saved_model)).model.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(z["x"])).argmax(1).numpy()
    assert len(set(pred.tolist())) > 1, "degenerate model: every image gets one class"
    assert abs(r["top1"] - float((pred == z["y"]).mean())) <= 1.0 / len(pred) + 1e-9

    # the same bundle run locally by the same agent: same top-1, fps within the noise of a shared 2-core box
    from hw_prune.deploy.bundle import LocalBundle, run_agent_local

    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    local = run_agent_local(LocalBundle(out / "bundle", manifest), "onnxruntime", 200)
    assert local["top1"] == r["top1"]
    assert 0.5 < r["fps"] / local["fps"] < 2.0, (r["fps"], local["fps"])
    assert r["timings"]["total_s"] > r["timings"]["run_s"] > 0


def test_sim_backend_over_ssh_is_labelled_simulated(sshd, ssh_args, tmp_path):
    res = run_cli("deploy", "--json", "--model", "resnet20", "--board", "kv260", "--backend", "sim", "--runs", "20",
                  "--keep", "-o", tmp_path / "run", *ssh_args)
    assert res.returncode == 0, res.stderr
    r = res.json()
    assert r["simulated"] is True and r["backend"] == "sim" and r["top1"] is None
    assert Path(r["remote_dir"]).is_dir() and (Path(r["remote_dir"]) / "manifest.json").is_file()  # --keep
    # the simulator on the board gives exactly what the local simulator gives for the same specs
    from hw_prune.hw.boards import load_board
    from hw_prune.hw.sim_dpu import SimDPU

    specs = json.loads((tmp_path / "run" / "bundle" / "layers.json").read_text())
    ref = SimDPU(load_board("kv260").sim_params(), 0).measure_model(specs, 20)
    assert r["fps"] == pytest.approx(ref["fps"], rel=1e-9)


def test_unknown_host_key_is_refused_then_trusted_explicitly(sshd, ssh_args, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    args = [a if a != str(sshd.known_hosts) else str(kh) for a in ssh_args]
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", *FAST, "-o", tmp_path / "r1", *args)
    assert_user_error(res, "unknown", f"[127.0.0.1]:{sshd.port}", "SHA256:" + _fingerprint(sshd.host_pub_b64),
                      "--trust-new-host")
    assert not (tmp_path / "r1" / "result.json").exists()
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", *FAST, "--trust-new-host",
                  "-o", tmp_path / "r2", *args)
    assert res.returncode == 0, res.stderr
    assert sshd.host_pub_b64 in kh.read_text()  # recorded (test_session checks the next connect needs no flag)


def test_changed_host_key_is_refused(sshd, ssh_args, tmp_path):
    kh = tmp_path / "known_hosts"
    wrong = (Path(str(sshd.wrong_key) + ".pub")).read_text().split()
    kh.write_text(f"[127.0.0.1]:{sshd.port} {wrong[0]} {wrong[1]}\n")
    args = [a if a != str(sshd.known_hosts) else str(kh) for a in ssh_args]
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", *FAST, "--trust-new-host",
                  "-o", tmp_path / "r", *args)
    assert_user_error(res, "changed", "SHA256:" + _fingerprint(sshd.host_pub_b64))


def test_wrong_user_key_is_an_authentication_error(sshd, ssh_args, tmp_path):
    args = [a if a != str(sshd.user_key) else str(sshd.wrong_key) for a in ssh_args]
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", *FAST, "-o", tmp_path / "r", *args,
                  env={"SSH_AUTH_SOCK": ""})
    assert_user_error(res, "authentication failed", "--key")
    assert not (tmp_path / "r" / "result.json").exists()


def test_remote_dir_that_cannot_be_written(sshd, ssh_args, tmp_path):
    if os.geteuid() == 0:
        bad = "/sys/hw_prune_deploy_test"   # read-only even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        bad = str(ro / "sub")
    args = ssh_args[:-1] + [bad]
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", *FAST, "-o", tmp_path / "r", *args)
    assert_user_error(res, "not writable", "--remote-dir")


def test_shell_metacharacters_in_names_and_paths_are_not_executed(sshd, ssh_args, saved_model, tmp_path):
    tag = uuid.uuid4().hex[:8]
    markers = [Path.home() / f"pwned{tag}a", Path(tmp_path) / f"pwned{tag}b", Path(tmp_path) / f"pwned{tag}c",
               Path(tmp_path) / f"pwned{tag}d"]
    model = tmp_path / f"my model; touch pwned{tag}a $(touch pwned{tag}a) 'q\" `touch pwned{tag}a`.pt"
    model.write_bytes(Path(saved_model).read_bytes())
    remote = (f"{tmp_path}/board dir; touch {markers[1]}; $(touch {markers[2]}) `touch {markers[3]}` "
              f"'it''s' \"q\" & echo x |")
    args = ssh_args[:-1] + [remote]
    res = run_cli("deploy", "--json", "--model", model, "--board", "zcu104", *FAST, "--keep", "-o", tmp_path / "r",
                  *args)
    assert res.returncode == 0, res.stderr
    r = res.json()
    for m in markers:
        assert not m.exists(), f"shell injection: {m} was created"
    # the path and the model name reached the board literally
    rd = Path(r["remote_dir"])
    assert str(rd).startswith(remote + "/") and rd.is_dir()
    assert (rd / (model.name[:-3] + ".onnx")).is_file()


def test_connection_refused_and_connect_timeout(sshd, ssh_args, tmp_path):
    from tests.deploy.sshd import free_port

    port = free_port()  # nothing listens there
    args = list(ssh_args)
    args[1] = f"root@127.0.0.1:{port}"
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", *FAST, "--trust-new-host",
                  "-o", tmp_path / "r1", *args)
    assert_user_error(res, "connection refused", str(port))

    import socket

    with socket.socket() as silent:  # accepts TCP but never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        args[1] = f"root@127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", *FAST, "--timeout", "2",
                      "--trust-new-host", "-o", tmp_path / "r2", *args)
        assert_user_error(res, "timed out")
        assert time.monotonic() - t0 < 60


def test_remote_command_timeout(sshd, ssh_args, tmp_path):
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", "--backend", "onnxruntime",
                  "--runs", "10000000", "--timeout", "4", "-o", tmp_path / "r", *ssh_args)
    assert_user_error(res, "--timeout")
    assert not (tmp_path / "r" / "result.json").exists()


def _agent_pids(marker: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker in (p / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def test_sshd_killed_mid_run_then_rerun_succeeds(sshd, ssh_args, tmp_path):
    out = tmp_path / "run"
    marker = str(Path(ssh_args[-1]) / "hw_prune-deploy-")
    cmd = [sys.executable, "-m", "hw_prune.cli", "deploy", "--model", "resnet20", "--board", "zcu104",
           "--backend", "onnxruntime", "--runs", "1000000", "-o", str(out), *ssh_args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _agent_pids(marker):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert _agent_pids(marker), "the agent never started on the board"
        time.sleep(1.0)  # mid-run
        sshd.kill()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sshd.start()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "dropped" in err, err
    assert not (out / "result.json").exists()
    assert json.loads((out / "error.json").read_text())["complete"] is False
    # the agent noticed its session was gone and stopped (nothing keeps burning the board's CPU)
    t0 = time.monotonic()
    while _agent_pids(marker) and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    assert not _agent_pids(marker)
    # rerun into the same folder after the board is back
    res = run_cli("deploy", "--json", "--model", "resnet20", "--board", "zcu104", "--backend", "onnxruntime",
                  "--runs", "20", "-o", out, *ssh_args)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "result.json").read_text())["complete"] is True
    assert not (out / "error.json").exists()


def test_bad_arguments_fail_before_any_connection(tmp_path):
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", "--host", "root@bad host;x", "-o", tmp_path / "a")
    assert_user_error(res, "USER@HOST[:PORT]")
    res = run_cli("deploy", "--model", "resnet20", "--board", "zcu104", "--host", "root@127.0.0.1", "--backend", "dpu",
                  "-o", tmp_path / "b")
    assert_user_error(res, "--xmodel")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
