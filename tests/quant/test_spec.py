"""The quantization spec string: every accepted form, canonical names, and errors that name the allowed forms."""

import pytest

from dunet import DunetError
from dunet.config import apply_overrides, from_dict
from dunet.models import ModelConfig, build_model
from dunet.quant import QuantSpec, parse_quant


@pytest.mark.parametrize("text,expected", [
    ("none", QuantSpec()),
    ("32/32/32", QuantSpec()),
    ("bw", QuantSpec("binary")),
    ("BW-Alpha", QuantSpec("binary", alpha=True)),
    ("tw", QuantSpec("ternary")),
    ("tw-alpha", QuantSpec("ternary", alpha=True)),
    ("32/1/32", QuantSpec("binary")),
    ("8/1/8", QuantSpec("binary", input_bits=8, grad_bits=8)),
    ("6/1/6", QuantSpec("binary", input_bits=6, grad_bits=6)),
    ("8/2/8", QuantSpec("ternary", input_bits=8, grad_bits=8)),
    ("8/32/8", QuantSpec("fp", input_bits=8, grad_bits=8)),
    ("4/1/32", QuantSpec("binary", input_bits=4)),
    ("bw-alpha-8/1/8", QuantSpec("binary", alpha=True, input_bits=8, grad_bits=8)),
    ("tw-alpha-6/2/6", QuantSpec("ternary", alpha=True, input_bits=6, grad_bits=6)),
    ("bw-8/1/8", QuantSpec("binary", input_bits=8, grad_bits=8)),
    ("1/1/32", QuantSpec("binary", input_bits=1)),  # binary inputs sign(x)
    ("bw-alpha-1/1/32", QuantSpec("binary", alpha=True, input_bits=1)),
    ("1/1/8", QuantSpec("binary", input_bits=1, grad_bits=8)),
    ("1/2/8", QuantSpec("ternary", input_bits=1, grad_bits=8)),
])
def test_accepted_forms(text, expected):
    spec = parse_quant(text)
    assert spec == expected
    assert parse_quant(spec.name) == spec  # the canonical name parses back
    assert spec.sign_inputs == (spec.input_bits == 1)


def test_canonical_names():
    assert parse_quant("bw-8/1/8").name == "8/1/8"
    assert parse_quant("32/1/32").name == "bw"
    assert parse_quant("BW-ALPHA-8/1/8").name == "bw-alpha-8/1/8"
    assert parse_quant("32/32/32").name == "none"


@pytest.mark.parametrize("text,message", [
    ("xnor", "not a quantization spec"),
    ("8/3/8", "weight bits must be 1"),
    ("0/1/8", "input bits must be 1 \\(sign\\), 2-8"),
    ("1/1/1", "gradient bits must be 2-8"),
    ("16/1/8", "input bits must be 1 \\(sign\\), 2-8"),
    ("8/1/9", "gradient bits must be 2-8"),
    ("tw-8/1/8", "tw has 2-bit weights"),
    ("bw-alpha-8/32/8", "bw-alpha has 1-bit weights"),
    ("bw-alpha-1/32/32", "bw-alpha has 1-bit weights"),
    ("foo-8/1/8", "unknown scheme 'foo'"),
])
def test_errors_name_the_problem(text, message):
    with pytest.raises(DunetError, match=message):
        parse_quant(text)


def test_error_lists_allowed_forms():
    with pytest.raises(DunetError) as err:
        parse_quant("binary")
    assert all(form in str(err.value) for form in ("bw-alpha", "tw", "8/1/8", "bw-alpha-8/1/8", "1/1/32", "1 sign"))


@pytest.mark.parametrize("fields", [dict(weights="fp", alpha=True), dict(weights="binary", input_bits=9),
                                    dict(weights="ternary", grad_bits=1), dict(weights="xnor")])
def test_a_spec_that_cannot_be_built_lists_the_allowed_forms(fields):
    with pytest.raises(DunetError) as err:
        QuantSpec(**fields)
    assert "bw-alpha-8/1/8" in str(err.value)


def test_config_key_and_set_override_reach_the_model():
    data = apply_overrides({"arch": "dunet", "units": 1, "channels": 8, "growth": 4, "bottleneck": 8,
                            "landmarks": 3, "input_size": 64}, ["quant=bw-alpha-8/1/8"])
    cfg = from_dict(ModelConfig, data)
    model = build_model(cfg)
    specs = [m.spec for m in model.modules() if hasattr(m, "spec")]
    assert set(specs) == {parse_quant("bw-alpha-8/1/8")}
    assert len({id(spec) for spec in specs}) == 1  # parsed once by build_model, shared by every layer


def test_bad_spec_in_a_model_config_is_a_dunet_error():
    with pytest.raises(DunetError, match="quant 'bw-8/2/8'"):
        build_model(ModelConfig(units=1, channels=8, growth=4, bottleneck=8, input_size=64, quant="bw-8/2/8"))
