"""Every shipped model loads (files written by dunet 0.1.0, read into model cards) and `dunet eval --split val`
reproduces the held-out figures its entry in models.json records."""

import json
from pathlib import Path

import pytest

from dunet.cli import main
from dunet.engine.pretrained import list_pretrained


def recorded_figures(validation: str) -> tuple[dict[str, str], int]:
    """"nme_io 3.57, fr_0.08 0.008 on 121 held-out samples (...)" -> ({"nme_io": "3.57", ...}, 121). Figures
    of the flip test ("pck_0.2 with flip 78.93") are left out: the models are scored without it here."""
    figures, _, rest = validation.partition(" on ")
    pairs = [item.rsplit(" ", 1) for item in figures.split(", ")]
    return {key: value for key, value in pairs if " " not in key}, int(rest.split()[0])


def test_recorded_figures_are_read():
    figures, count = recorded_figures("pck_0.2 76.64, pck_0.2 with flip 78.93 on 100 held-out samples (split_seed 0)")
    assert figures == {"pck_0.2": "76.64"} and count == 100


@pytest.mark.parametrize("entry", list_pretrained(), ids=lambda entry: entry["name"])
def test_a_shipped_model_reproduces_its_held_out_figures(entry, shared_data, capsys):
    from dunet.engine.inference import LandmarkModel
    from dunet.engine.pretrained import resolve_pretrained

    train = LandmarkModel.load(resolve_pretrained(entry["name"])).config.data.train[0]
    kind, path = train.split(":", 1)  # the held-out split came off the first training source
    data = f"{kind}:{shared_data / Path(path).name}"
    capsys.readouterr()
    # Model cards are fp32 figures; --precision auto would pick bf16 on a CPU that has it.
    assert main(["eval", "--model", entry["name"], "--data", data, "--split", "val", "--json",
                 "--precision", "fp32", "--backend", "torch"]) == 0
    out = capsys.readouterr()
    metrics = json.loads(out.out)
    assert "split as the model's training data" in out.err  # the same split of another copy of the data
    figures, count = recorded_figures(entry["validation"])
    assert figures and metrics["n"] == count
    for key, text in figures.items():  # within one unit of the last recorded digit: 0.01 points for percentages
        unit = 10.0 ** -len(text.partition(".")[2])
        assert metrics[key] == pytest.approx(float(text), abs=unit), (entry["name"], key)
