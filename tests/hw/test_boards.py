"""Board specs: every shipped board validates; bad boards fail with one line naming file, field and fix."""

from __future__ import annotations

import pytest

from hw_prune.errors import UserError
from hw_prune.hw.boards import BoardSpec, board_names, load_board
from tests.conftest import assert_user_error


def test_shipped_boards_validate():
    names = board_names()
    for n in ("zcu104", "zcu102", "kv260", "ultra96v2", "pynq-z2", "host-cpu"):
        assert n in names
    for n in names:
        b = load_board(n)
        assert isinstance(b, BoardSpec) and b.name == n
        if b.kind == "dpu":
            assert b.dpu.pp * b.dpu.icp * b.dpu.ocp * 2 == int(b.dpu.arch[1:])
            assert b.sim_params()["icp"] == b.dpu.icp
        if b.kind in ("dpu", "finn"):
            assert b.finn is not None and b.finn.luts == b.part.luts > 0 and str(b.part) == b.part.name
    assert load_board("pynq-z2").dpu is None and load_board("pynq-z2").kind == "finn"
    assert load_board("zcu104").dpu.cores == 2 and load_board("zcu102").dpu.clock_mhz == 281


def test_user_board_file(tmp_path):
    text = (load_board("kv260").source and open(load_board("kv260").source).read()).replace("kv260", "my-kv")
    p = tmp_path / "my.yaml"
    p.write_text(text)
    b = load_board(str(p))
    assert b.name == "my-kv" and b.dpu.arch == "B4096"


def test_unknown_board_lists_known(cli):
    res = cli("measure", "--model", "resnet20", "--board", "zcu999")
    assert_user_error(res, "unknown board 'zcu999'", "zcu104", "kv260")


@pytest.mark.parametrize("body,needles", [
    ("name: x\nkind: dpu\npart: {name: xczu7ev, luts: 1, brams: 1, dsps: 1}\n"
     "dpu: {arch: B4096, pp: 8, icp: 16, ocp: 16, cores: two, clock_mhz: 300}\n"
     "ddr_gbps: 19.2\nddr_efficiency: 0.8\nframe_overhead_ms: 0.3\n", ["dpu.cores", "integer"]),
    ("name: x\nkind: dpu\npart: {name: xczu7ev, luts: 1, brams: 1, dsps: 1}\n"
     "dpu: {arch: B4096, pp: 8, icp: 12, ocp: 16, cores: 1, clock_mhz: 300}\n"
     "ddr_gbps: 19.2\nddr_efficiency: 0.8\nframe_overhead_ms: 0.3\n", ["'dpu'", "pp*icp*ocp*2"]),
    ("name: x\nkind: gpu\nddr_gbps: 1\nddr_efficiency: 0.8\nframe_overhead_ms: 0\n", ["'kind'"]),
    ("name: x\nkind: dpu\nddr_gbps: 1\nddr_efficiency: 0.8\nframe_overhead_ms: 0\ncolour: red\n", ["colour",
                                                                                                  "unknown field"]),
    ("name: x\nkind: [dpu\n", ["not valid YAML", "line"]),
])
def test_malformed_board_names_file_and_field(tmp_path, body, needles):
    p = tmp_path / "bad.yaml"
    p.write_text(body)
    with pytest.raises(UserError) as e:
        load_board(str(p))
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_malformed_board_cli_one_line(cli, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nkind: dpu\nddr_gbps: fast\nddr_efficiency: 0.8\nframe_overhead_ms: 0\n")
    assert_user_error(cli("profile", "--board", str(p), "--quick"), str(p), "ddr_gbps")


def test_non_dpu_boards_refuse_the_simulator(cli):
    assert_user_error(cli("measure", "--model", "resnet20", "--board", "pynq-z2", "--backend", "sim"),
                      "no DPU", "FINN")
    assert_user_error(cli("measure", "--model", "resnet20", "--board", "zcu104", "--backend", "local"),
                      "host-cpu")
