"""Bad input to quantize / build: one line, exit 2, nothing overwritten; and a build leaves the
caller's process as it was (environment, stdout/stderr, logging)."""

from __future__ import annotations

import logging
import os
import sys

import torch

from tests.conftest import ROOT, assert_user_error, run_cli


def test_build_rejects_a_non_onnx_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model")
    assert_user_error(run_cli("build", "--model", bad, "--board", "pynq-z2"), "not an ONNX file", "quantize")


def test_build_rejects_float_onnx_and_missing_files(tmp_path):
    from hw_prune.export import export_onnx
    from tests.finn.nets import tiny_cnn

    f = export_onnx(tiny_cnn(), (1, 3, 32, 32), tmp_path / "float.onnx")
    assert_user_error(run_cli("build", "--model", f, "--board", "pynq-z2"), "no Quant nodes")
    assert_user_error(run_cli("build", "--model", tmp_path / "nope.onnx", "--board", "zcu104"), "does not exist")


def test_build_rejects_unknown_or_non_fpga_boards(tmp_path):
    assert_user_error(run_cli("build", "--model", tmp_path / "x.onnx", "--board", "pynq-z9"), "unknown board")
    assert_user_error(run_cli("build", "--model", tmp_path / "x.onnx", "--board", "host-cpu"), "no FINN section")
    assert_user_error(run_cli("build", "--model", "x.onnx", "--board", "pynq-z2", "--target", "vitis"), "invalid choice")


def test_quantize_rejects_bad_bits_and_keeps_existing_output(tmp_path):
    out = tmp_path / "q.onnx"
    out.write_text("keep me")
    res = run_cli("quantize", "--model", "tests.finn.nets:tiny_cnn", "--data", "synthetic:tiny",
                  "--weight-bits", "12", "-o", out, env={"PYTHONPATH": str(ROOT)})
    assert_user_error(res, "--weight-bits 12", "2 to 8")
    assert out.read_text() == "keep me"


def test_build_restores_the_callers_process_state(tmp_path, monkeypatch):
    """In-process estimate build: env vars, sys.stdout/stderr and root log handlers come back unchanged."""
    from hw_prune.finn import FinnBuilder, finn_target
    from hw_prune.quant import calibrate, export_checked, to_brevitas
    from tests.finn.nets import tiny_cnn

    monkeypatch.setenv("HW_PRUNE_CACHE", str(tmp_path / "cache"))
    q = to_brevitas(tiny_cnn((8, 8, 8)).eval(), 4, 4)
    calibrate(q, [(torch.randn(4, 3, 32, 32), None)], batches=1)
    export_checked(q, (1, 3, 32, 32), tmp_path / "m.onnx", torch.randn(1, 3, 32, 32))
    env_before = dict(os.environ)
    streams = (sys.stdout, sys.stderr)
    handlers = list(logging.getLogger().handlers)
    rep = FinnBuilder(tmp_path / "m.onnx", finn_target("pynq-z2")).build(500)
    assert rep.estimated_fps > 0 and rep.luts > 0
    assert dict(os.environ) == env_before
    assert (sys.stdout, sys.stderr) == streams
    assert logging.getLogger().handlers == handlers
