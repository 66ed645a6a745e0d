"""`dunet models`: the pretrained models that ship inside the package."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the pretrained models shipped with dunet")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dunet.runtime.pretrained import default_models, list_pretrained

    models = list_pretrained()
    defaults = default_models()
    if args.json:
        print(json.dumps([{**m, "default_for": [t for t, name in defaults.items() if name == m["name"]]}
                          for m in models]))
        return 0
    if not models:
        print("no pretrained models are installed")
        return 0
    width = max(len(m["name"]) for m in models)
    for m in models:
        print(f"{m['name']:<{width}} {m['task']:<6} {m['summary']}")
        print(f"{'':<{width}} validation: {m['validation']}; data: {m['data']} (research-only)")
        if "openvino_int8" in m:
            int8 = m["openvino_int8"]
            measured = f"; measured on {int8['measured_on']}" if "measured_on" in int8 else ""
            print(f"{'':<{width}} OpenVINO runs its int8 file: {int8['validation']}{measured}")
    for task, name in defaults.items():
        print(f"{task}: {name} (`dunet.load({task!r})`, `--model {task}`)")
    return 0
