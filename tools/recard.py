"""Rewrite the model card of shipped model files in the current card version, leaving their weights as they are.

    .venv/bin/python tools/recard.py            # every file models.json lists, int8 IRs included
    .venv/bin/python tools/recard.py --check    # exit 1 if a file's card is not current
    .venv/bin/python tools/recard.py --force lsp-dunet4 lsp-lspet-dunet4   # rewrite these cards even if current

A card is current when it is of the current card version, has the training config beside it, and names the
crop detector of its model's task (`dunet.card.detector_for`: a shipped pose model's card names BlazePose's
person detector since dunet finds people).

A `.safetensors` file gets a new header (the tensor bytes are copied as they are: safetensors keeps its metadata
in the JSON header before them); an OpenVINO IR gets new rt_info and is saved again (its .bin compared before
and after). The card is the one the old card reads into (`dunet.card.card_from_metadata`), with the crop detector
of the model's task and the training config beside it, as `dunet export` writes them today.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunet.card import CARD_VERSION, METADATA_KEY, TRAINING_KEY, card_from_metadata, detector_for, training_from_metadata  # noqa: E402
from dunet.runtime.pretrained import PRETRAINED_DIR, list_pretrained  # noqa: E402
from dunet.runtime.weights import read_weights  # noqa: E402

LEGACY_KEYS = ("dunet_config", "dunet_meta", "train_config", "spec", "model_config", "heads", "input",
               "input_size", "final_output")  # what files before card version 2 kept beside or instead of the card


def new_metadata(metadata: dict[str, str], where: str, task: str) -> dict[str, str]:
    card = card_from_metadata(metadata, where)
    card = dataclasses.replace(card, detector=detector_for(task) or card.detector)
    kept = {k: v for k, v in metadata.items() if k not in (METADATA_KEY, TRAINING_KEY, *LEGACY_KEYS)}
    training = training_from_metadata(metadata, where)
    return {**kept, **card.to_metadata(), **({TRAINING_KEY: json.dumps(training)} if training else {})}


def rewrite_safetensors(path: Path, metadata: dict[str, str]) -> None:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length:])
    tmp.replace(path)


def rewrite_ir(xml: Path, metadata: dict[str, str]) -> None:
    import openvino

    from dunet.deploy.openvino import _save_ir
    from dunet.runtime.openvino import core, model_metadata

    before = hashlib.sha256(xml.with_suffix(".bin").read_bytes()).hexdigest()
    old = core().read_model(str(xml))
    precision = model_metadata(xml, old).get("precision")
    # A new Model over the same graph: its rt_info starts empty, so keys of the old card do not stay behind.
    model = openvino.Model(old.get_results(), old.get_parameters(), old.get_friendly_name())
    with tempfile.TemporaryDirectory(dir=xml.parent) as tmp:  # OpenVINO maps the .bin it read: never write over it
        written = _save_ir(model, {**metadata, **({"precision": precision} if precision else {})}, Path(tmp) / xml.name)
        del model, old
        after = hashlib.sha256(written.with_suffix(".bin").read_bytes()).hexdigest()
        if before == after:
            written.with_suffix(".bin").replace(xml.with_suffix(".bin"))
            written.replace(xml)
    if before != after:
        raise SystemExit(f"{xml}: its weights changed when saved again; restore it from git")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that every card is current")
    parser.add_argument("--force", action="store_true", help="rewrite the cards even where they are current")
    parser.add_argument("names", nargs="*", help="only these shipped models (default: every one)")
    args = parser.parse_args()
    known = {entry["name"] for entry in list_pretrained()}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        raise SystemExit(f"not a shipped model: {', '.join(unknown)} (models.json lists {', '.join(sorted(known))})")
    index_path = PRETRAINED_DIR / "models.json"
    index = json.loads(index_path.read_text())
    stale = []
    for entry in list_pretrained():
        if args.names and entry["name"] not in args.names:
            continue
        files = [PRETRAINED_DIR / entry["file"]]
        if "openvino_int8" in entry:
            files.append(PRETRAINED_DIR / entry["openvino_int8"]["file"])
        for path in files:
            metadata = _metadata(path)
            card = json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else {}
            version = card.get("card_version")
            detector = (card.get("crop") or {}).get("detector")
            current = (version == CARD_VERSION and TRAINING_KEY in metadata
                       and detector == (detector_for(entry["task"]) or detector))
            if current and not args.force:
                continue
            if not current:
                stale.append(path.name)
            if args.check:
                continue
            fresh = new_metadata(metadata, str(path), entry["task"])
            if path.suffix == ".xml":
                rewrite_ir(path, fresh)
            else:
                rewrite_safetensors(path, fresh)
            print(f"{path.name}: card version {version} -> {CARD_VERSION}, detector {detector} -> "
                  f"{json.loads(fresh[METADATA_KEY])['crop']['detector']}")
    if args.check:
        print("\n".join(f"{name}: card not current (version {CARD_VERSION}, training config, the task's detector)"
                        for name in stale) or "every card is current")
        return 1 if stale else 0
    for entry in index["models"]:  # the sizes the index records
        entry["bytes"] = (PRETRAINED_DIR / entry["file"]).stat().st_size
        if "openvino_int8" in entry:
            xml = PRETRAINED_DIR / entry["openvino_int8"]["file"]
            entry["openvino_int8"]["bytes"] = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    index_path.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return 0


def _metadata(path: Path) -> dict[str, str]:
    if path.suffix == ".xml":
        from dunet.runtime.openvino import core, model_metadata

        return model_metadata(path, core().read_model(str(path)))
    return read_weights(path)[0]


if __name__ == "__main__":
    sys.exit(main())
