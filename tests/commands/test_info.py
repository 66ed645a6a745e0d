import json

from dunet.cli import main


def _info(capsys, *args):
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_contract(capsys):
    info = _info(capsys, "--arch", "dunet", "--units", "4", "--order", "1", "--landmarks", "16", "--input-size", "128")
    assert info["params"] == 3_952_128 and info["conv_params"] == 3_901_824
    assert info["macs"] > 1e9 and info["fp32_bytes"] > 4 * info["params"]
    assert "packed_bytes" not in info
    assert info["backend"] in ("torch", "onnx", "openvino")  # the runtime models run on by default


def test_info_macs_scale_with_input_area(capsys):
    small = _info(capsys, "--units", "2", "--input-size", "128")["macs"]
    large = _info(capsys, "--units", "2", "--input-size", "256")["macs"]
    assert 3.9 < large / small < 4.1


def test_info_quant_adds_packed_bytes(capsys):
    info = _info(capsys, "--units", "2", "--quant", "bw-alpha")
    assert info["packed_bytes"] < 0.08 * info["fp32_bytes"]


def test_info_hourglass_hierarchical_and_table(capsys):
    assert _info(capsys, "--arch", "hourglass", "--units", "2", "--block", "hierarchical")["params"] > 0
    assert main(["info", "--units", "2"]) == 0
    assert "parameters" in capsys.readouterr().out


def test_info_bad_quant_is_a_clear_error(capsys):
    assert main(["info", "--units", "2", "--quant", "7/3/7"]) == 2
    assert "7/3/7" in capsys.readouterr().err
