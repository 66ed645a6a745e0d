"""The reference part of docs/api.md is generated from the docstrings and signatures of dunet.load, Landmarker,
Landmarks and process_video by tools/api_reference.py: it must match the code."""

from __future__ import annotations

from tests.tools.helpers import load_tool


def test_docs_api_md_matches_the_docstrings():
    tool = load_tool("api_reference")
    current = tool.OUT.read_text(encoding="utf-8")
    assert tool.START in current and tool.END in current, f"docs/api.md lost its generated part; run: {tool.COMMAND}"
    assert current == tool.updated(current), f"docs/api.md is out of date with dunet.api's docstrings; run: {tool.COMMAND}"


def test_the_reference_names_every_public_call():
    text = load_tool("api_reference").render()
    for name in ["dunet.load(name_or_path", "Landmarker.predict(", "Landmarker.predict_batch(", "Landmarker.detect(",
                 "Landmarks.to_dict(", "dunet.video.process_video(", "| `points` |", "| `scores` |"]:
        assert name in text


def test_check_mode_names_the_command_and_keeps_the_hand_written_part(tmp_path, capsys):
    tool = load_tool("api_reference")
    page = tmp_path / "api.md"
    page.write_text("# Hand-written\n\ntext\n", encoding="utf-8")
    assert tool.main(["--check", "--out", str(page)]) == 1
    assert "python tools/api_reference.py" in capsys.readouterr().err
    assert tool.main(["--out", str(page)]) == 0
    assert page.read_text(encoding="utf-8").startswith("# Hand-written\n\ntext\n")
    assert tool.main(["--check", "--out", str(page)]) == 0
