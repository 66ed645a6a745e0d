"""One model card, written the same way into every model file: it round-trips, holds nothing of training (the
training config travels beside it), cards of version 1 and files written before cards load with their card
filled in, and a card that is incomplete or from a newer dunet is one line."""

import json
import subprocess
import sys

import pytest
import torch

from dunet import DunetError
from dunet.card import CARD_VERSION, METADATA_KEY, TRAINING_KEY, ModelCard, card_from_metadata, training_from_metadata
from dunet.checkpoint import load_checkpoint, save_checkpoint
from dunet.data.spec import SCORING_FIELDS, SPECS, spec_to_dict
from dunet.engine.config import TrainConfig, config_to_dict
from dunet.models import ModelConfig, build_model

SMALL = ModelConfig(units=1, input_size=32, levels=2, landmarks=14, channels=16, bottleneck=16, growth=8)
CONFIG = TrainConfig(model=SMALL, decode_blur=1.5, supervision=("detection",))
CARD = CONFIG.model_card(SPECS["lsp"])


def test_a_card_round_trips_through_its_dict_and_holds_nothing_of_training():
    data = json.loads(json.dumps(CARD.to_dict()))
    assert data["card_version"] == CARD_VERSION and data["heads"] == ["detection"]
    assert data["codec"]["blur"] == 1.5 and data["codec"]["stride"] == 4 and data["codec"]["input_size"] == 32
    assert data["input"]["size"] == 32 and data["input"]["colour"] == "RGB"
    assert data["landmarks"]["groups"][0] == ["Head", [12, 13]]
    assert set(data) == {"card_version", "network", "input", "landmarks", "codec", "heads", "crop", "provenance"}
    assert ModelCard.from_dict(data) == CARD


def test_a_face_model_card_names_the_face_detector():
    face = TrainConfig(model=SMALL.replace(landmarks=68)).model_card(SPECS["300w"], {"task": "face"})
    assert face.detector == "blazeface" and CARD.detector is None
    assert TrainConfig(model=SMALL.replace(landmarks=68)).model_card(SPECS["300w"]).detector is None  # a user's
    assert ModelCard.from_dict(json.loads(json.dumps(face.to_dict()))).detector == "blazeface"


def test_a_pose_model_card_names_the_person_detector():
    from dunet.card import DETECTORS, detector_for
    from dunet.runtime.pretrained import PRETRAINED_DIR, list_pretrained
    from dunet.runtime.weights import read_weights

    assert detector_for("pose") == "blazepose" and "blazepose" in DETECTORS
    pose = TrainConfig(model=SMALL).model_card(SPECS["lsp"], {"task": "pose"})
    assert ModelCard.from_dict(json.loads(json.dumps(pose.to_dict()))).detector == "blazepose"
    for entry in list_pretrained():  # the shipped files say it themselves
        path = PRETRAINED_DIR / entry["file"]
        assert card_from_metadata(read_weights(path)[0], str(path)).detector == detector_for(entry["task"])


def test_the_card_reads_without_pytorch():
    code = ("import sys, json; from dunet.card import ModelCard; "
            f"ModelCard.from_dict(json.loads({json.dumps(CARD.to_dict())!r})); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_checkpoint_written_today_loads_and_round_trips_its_card(tmp_path):
    model = build_model(SMALL)
    run = save_checkpoint(tmp_path / "run" / "last", model, CARD, config=CONFIG, train_state={"epoch": 1},
                          metrics={"pck_0.2": 50.0})
    single = save_checkpoint(tmp_path / "model.safetensors", model, CARD, config=CONFIG)
    for path in (run, single):
        ckpt = load_checkpoint(path)
        assert ckpt.card.network == CARD.network and ckpt.card.spec == CARD.spec and ckpt.card.codec == CARD.codec
        assert ckpt.config == CONFIG  # the training config, beside the card
        assert ckpt.card.provenance["dunet_version"] and ckpt.card.provenance["torch_version"] == torch.__version__
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


def version_1(card: ModelCard, config: TrainConfig) -> dict:
    """A card as dunet wrote it before version 2: the training config inside, heads and decode written out."""
    return {"card_version": 1, "config": config_to_dict(config), "spec": spec_to_dict(card.spec),
            "heads": list(card.heads), "decode": card.to_dict()["codec"], "provenance": {"task": "face"}}


def test_a_version_1_card_reads_into_the_same_card():
    data = version_1(CARD, CONFIG)
    card = card_from_metadata({METADATA_KEY: json.dumps(data)}, "v1.safetensors")
    assert (card.network, card.spec, card.codec, card.heads) == (CARD.network, CARD.spec, CARD.codec, CARD.heads)
    assert card.detector == "blazeface"  # dunet 0.1 found faces for a shipped face model (provenance task "face")
    assert training_from_metadata({METADATA_KEY: json.dumps(data)}, "v1") == config_to_dict(CONFIG)


def old_metadata() -> dict[str, str]:
    """The metadata of a model file written by dunet 0.1.0: the config with the spec inside, and a meta."""
    spec = {k: v for k, v in spec_to_dict(SPECS["lsp"]).items() if k not in SCORING_FIELDS}
    config = {**config_to_dict(CONFIG), "spec": spec}
    meta = {"format": "dunet-checkpoint", "format_version": 1, "dunet_version": "0.1.0", "metrics": {"n": 100}}
    return {"format": "dunet-checkpoint", "format_version": "1", "dunet_config": json.dumps(config),
            "dunet_meta": json.dumps(meta)}


def test_a_file_written_before_cards_loads_with_its_card_filled_in():
    card = card_from_metadata(old_metadata(), "old.safetensors")
    assert card.network == CARD.network and card.heads == ("detection",) and card.codec == CARD.codec
    assert card.spec == SPECS["lsp"]  # a shipped landmark set gets how it is scored back
    assert card.provenance == {"dunet_version": "0.1.0", "metrics": {"n": 100}}
    config = json.loads(old_metadata()["dunet_config"])
    spec = config.pop("spec")
    onnx = {"train_config": json.dumps(config), "spec": json.dumps(spec)}  # the ONNX layout
    assert card_from_metadata(onnx, "old.onnx").spec == SPECS["lsp"]


def test_an_incomplete_or_newer_card_is_one_line():
    data = CARD.to_dict()
    cases = [
        ({METADATA_KEY: json.dumps({k: v for k, v in data.items() if k != "landmarks"})},
         "m.safetensors: its model card is incomplete: no landmarks"),
        ({METADATA_KEY: json.dumps({**data, "card_version": CARD_VERSION + 1})},
         f"m.safetensors: its model card is from a newer dunet (card version {CARD_VERSION + 1}"),
        ({METADATA_KEY: json.dumps({**data, "network": {**data["network"], "units": 0}})},
         "m.safetensors: its model card's network or codec is damaged"),
        ({METADATA_KEY: json.dumps({**data, "heads": ["segmentation"]})},
         "m.safetensors: the model card disagrees with itself: heads ['segmentation']"),
        ({METADATA_KEY: json.dumps({"card_version": 1, "spec": data["landmarks"]})},
         "m.safetensors: its model card (version 1) is incomplete"),
        ({METADATA_KEY: "{not json"}, "m.safetensors: its dunet_card metadata is damaged"),
        ({**old_metadata(), "dunet_config": json.dumps(config_to_dict(CONFIG))},
         "m.safetensors: its model card is incomplete: no landmark spec"),
        ({"format": "dunet-checkpoint"}, "m.safetensors: no dunet model card in its metadata"),
        ({METADATA_KEY: json.dumps(data), TRAINING_KEY: "[1]"}, None),  # a damaged training config: the card reads
    ]
    for metadata, line in cases:
        if line is None:
            assert card_from_metadata(metadata, "m.safetensors") == CARD
            continue
        with pytest.raises(DunetError) as err:
            card_from_metadata(metadata, "m.safetensors")
        assert str(err.value).startswith(line) and "\n" not in str(err.value), str(err.value)
