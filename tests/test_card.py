"""One model card, written the same way into every model file: it round-trips, files written before cards
load with their card filled in, and a card that is incomplete or from a newer dunet is one line."""

import json

import pytest
import torch

from dunet import DunetError
from dunet.card import CARD_VERSION, METADATA_KEY, ModelCard, card_from_metadata
from dunet.checkpoint import load_checkpoint, save_checkpoint
from dunet.data.spec import SCORING_FIELDS, SPECS, spec_to_dict
from dunet.engine.config import TrainConfig, config_to_dict
from dunet.models import ModelConfig, build_model

SMALL = ModelConfig(units=1, input_size=32, levels=2, landmarks=14, channels=16, bottleneck=16, growth=8)
CARD = ModelCard(TrainConfig(model=SMALL, decode_blur=1.5, supervision=("detection",)), SPECS["lsp"])


def test_a_card_round_trips_through_its_dict():
    data = json.loads(json.dumps(CARD.to_dict()))
    assert data["card_version"] == CARD_VERSION and data["heads"] == ["detection"]
    assert data["decode"]["blur"] == 1.5 and data["decode"]["stride"] == 4 and data["decode"]["input_size"] == 32
    assert data["spec"]["groups"][0] == ["Head", [12, 13]]
    assert ModelCard.from_dict(data) == CARD


def test_a_checkpoint_written_today_loads_and_round_trips_its_card(tmp_path):
    model = build_model(SMALL)
    run = save_checkpoint(tmp_path / "run" / "last", model, CARD, train_state={"epoch": 1}, metrics={"pck_0.2": 50.0})
    single = save_checkpoint(tmp_path / "model.safetensors", model, CARD)
    for path in (run, single):
        card = load_checkpoint(path).card
        assert card.config == CARD.config and card.spec == CARD.spec
        assert card.provenance["dunet_version"] and card.provenance["torch_version"] == torch.__version__
    assert load_checkpoint(tmp_path / "run").card.provenance["metrics"] == {"pck_0.2": 50.0}
    assert json.loads((run / "card.json").read_text()) == load_checkpoint(run).card.to_dict()  # the copy to read


def test_packed_and_onnx_files_carry_the_same_card(tmp_path):
    from dunet.quant.packing import load_packed, save_packed

    stamped = CARD.stamped(metrics={"pck_0.2": 50.0})
    packed = save_packed(build_model(SMALL.replace(quant="bw")), stamped.to_metadata(), tmp_path / "m.packed")
    metadata, _ = load_packed(packed)
    assert metadata[METADATA_KEY] == stamped.to_metadata()[METADATA_KEY]
    assert card_from_metadata(metadata, "m.packed") == stamped

    pytest.importorskip("onnx")
    from dunet.deploy.onnx_export import export_onnx, read_metadata

    path = export_onnx(build_model(SMALL), tmp_path / "m.onnx", 32, exporter="torchscript",
                       metadata=stamped.to_metadata())
    assert card_from_metadata(read_metadata(path), "m.onnx") == stamped


def old_metadata() -> dict[str, str]:
    """The metadata of a model file written by dunet 0.1.0: the config with the spec inside, and a meta."""
    spec = {k: v for k, v in spec_to_dict(SPECS["lsp"]).items() if k not in SCORING_FIELDS}
    config = {**config_to_dict(CARD.config), "spec": spec}
    meta = {"format": "dunet-checkpoint", "format_version": 1, "dunet_version": "0.1.0", "metrics": {"n": 100}}
    return {"format": "dunet-checkpoint", "format_version": "1", "dunet_config": json.dumps(config),
            "dunet_meta": json.dumps(meta)}


def test_a_file_written_before_cards_loads_with_its_card_filled_in():
    card = card_from_metadata(old_metadata(), "old.safetensors")
    assert card.config == CARD.config and card.heads == ("detection",) and card.decode == CARD.decode
    assert card.spec == SPECS["lsp"]  # a shipped landmark set gets how it is scored back
    assert card.provenance == {"dunet_version": "0.1.0", "metrics": {"n": 100}}
    config = json.loads(old_metadata()["dunet_config"])
    spec = config.pop("spec")
    onnx = {"train_config": json.dumps(config), "spec": json.dumps(spec)}  # the ONNX layout
    assert card_from_metadata(onnx, "old.onnx").spec == SPECS["lsp"]


def test_an_incomplete_or_newer_card_is_one_line():
    data = CARD.to_dict()
    cases = [
        ({METADATA_KEY: json.dumps({k: v for k, v in data.items() if k != "spec"})},
         "m.safetensors: its model card is incomplete: no spec"),
        ({METADATA_KEY: json.dumps({**data, "card_version": CARD_VERSION + 1})},
         f"m.safetensors: its model card is from a newer dunet (card version {CARD_VERSION + 1}"),
        ({METADATA_KEY: json.dumps({**data, "config": {**data["config"], "model": {"units": 0}}})},
         "m.safetensors: its config is not a dunet training config"),
        ({METADATA_KEY: "{not json"}, "m.safetensors: its dunet_card metadata is damaged"),
        ({**old_metadata(), "dunet_config": json.dumps(config_to_dict(CARD.config))},
         "m.safetensors: its model card is incomplete: no landmark spec"),
        ({"format": "dunet-checkpoint"}, "m.safetensors: no dunet model card in its metadata"),
    ]
    for metadata, line in cases:
        with pytest.raises(DunetError) as err:
            card_from_metadata(metadata, "m.safetensors")
        assert str(err.value).startswith(line) and "\n" not in str(err.value), str(err.value)
