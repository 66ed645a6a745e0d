"""`dunet eval (CHECKPOINT | --model NAME) --data FORMAT:PATH [--json] [--flip]`"""

from __future__ import annotations

import argparse
import json

from dunet import DunetError

from dunet.commands import add_decode_blur_flag, add_model_flags
from dunet.config import flag_range


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model on a data set and print its metrics")
    p.add_argument("checkpoint", nargs="?", help="checkpoint or run directory, or a .safetensors / packed / .onnx / OpenVINO .xml model")
    p.add_argument("--data", required=True, help="FORMAT:PATH, e.g. 300w:/path/to/300w (docs/data.md)")
    add_model_flags(p, batch_size=16)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ced", metavar="PNG", help="write the cumulative error distribution plot here")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable samples instead of failing")
    p.add_argument("--split", default="all", choices=["all", "val", "train"],
                   help="val / train: only the held-out / training part of --data, split as the model's training "
                        "config split it (data.val_fraction, data.split_seed); reproduces a model card's numbers")
    p.add_argument("--limit", type=flag_range(int, 0), default=0, help="evaluate only the first N samples (0 = all)")
    add_decode_blur_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dunet.data.readers import open_source
    from dunet.engine.evaluate import confidence_report, errors_per_sample, predict_source, score
    from dunet.runtime.model import load_model
    from dunet.metrics import format_table, plot_ced

    if (args.checkpoint is None) == (args.model is None):
        raise DunetError("give either a CHECKPOINT path or --model NAME")
    runner = load_model(args.checkpoint or args.model, backend=args.backend, precision=args.precision,
                        device=args.device, threads=args.threads)
    runner.set_decode_blur(args.decode_blur)
    source = open_source(args.data, skip_bad=args.skip_bad)
    runner.check_source(source)
    indices = split_of(runner.config, len(source), args.split, args.data)
    if args.limit:
        indices = indices[: args.limit]
    pred, idx, scores = predict_source(runner.predict_crops, source, runner.input_size, indices=indices,
                                       batch_size=args.batch_size, flip=args.flip, progress=not args.json,
                                       skip_bad=args.skip_bad, with_scores=True)
    # A custom landmark set scores by the normaliser the model was trained with (data.normaliser).
    spec = runner.spec if runner.spec.keypoints == source.spec.keypoints else source.spec
    metrics = score(source, pred, idx, spec)
    metrics.update(confidence_report(source, pred, scores, idx, spec))
    if len(idx) < len(indices):  # --skip-bad left unreadable images out: say so, they are not in `n`
        metrics["bad_left_out"] = len(indices) - len(idx)
    metrics.update(quant_report(runner, metrics))
    if args.ced:
        plot_ced({runner.name: errors_per_sample(source, pred, idx, spec)}, args.ced)
    measured = what_was_measured(runner, source, args)
    if args.json:
        print(json.dumps({**metrics, "measured": measured}))
    else:
        threads = f", {runner.threads} thread(s)" if runner.threads else ""
        print(f"scored {runner.source} ({runner.name}, {runner.backend} backend, {runner.precision}{threads})")
        print(f"on {args.data} ({len(idx)} samples{'' if args.split == 'all' else ', ' + args.split + ' split'}"
              f"{', flip test' if args.flip else ''})")
        print(f"crops: {measured['box']}; decode blur {measured['decode_blur']} heatmap px")
        print(format_table(metrics))
    return 0


def what_was_measured(runner, source, args: argparse.Namespace) -> dict:
    """How the figures were obtained, for the header and --json: a figure means little without it."""
    return {"model": str(runner.source), "network": runner.name, "backend": runner.backend,
            "precision": runner.precision, "threads": runner.threads, "data": args.data, "split": args.split,
            "flip": bool(args.flip), "decode_blur": runner.card.codec.blur,
            # The crop eval cuts is the data's own box, never a detector's: dunet.load().predict without a box
            # crops what its detector finds, so its error on the same photos can differ.
            "box": f"each sample's labelled box x {source.spec.box_margin:g} (the landmark set's box_margin), "
                   "no detector"}


def quant_report(runner, metrics: dict) -> dict:
    """Balance index (paper eq. 7) of a quantized model run by PyTorch; nothing for the others."""
    if runner.card.network.quant == "none" or runner.backend != "torch":
        return {}
    from dunet.models.efficiency import balance_report

    nme = metrics.get("nme_io") or metrics.get("nme_box")
    if nme is None:
        return {}  # the balance index is defined on NME (paper eq. 7)
    return balance_report(runner.model, runner.card.network, nme)


def split_of(config, count: int, split: str, data: str) -> list[int]:
    """Sample indices of --split: all of them, or the training config's held-out / training part."""
    import sys

    from dunet.engine.trainer import split_indices

    if split == "all":
        return list(range(count))
    fraction, seed = config.data.val_fraction, config.data.split_seed
    if fraction <= 0 or config.data.val:
        raise DunetError(f"--split {split}: the model was not trained with a held-out fraction of its data "
                         f"(data.val_fraction {fraction}, data.val {config.data.val!r}); use --split all")
    first = config.data.train[0]  # with several training sources, the held-out split came off the first
    if data != first:
        print(f"note: --split {split} of {data}, split as the model's training data {first} was "
              f"(val_fraction {fraction}, split_seed {seed}); the same samples only if it is the same data",
              file=sys.stderr)
    train, val = split_indices(count, fraction, seed)
    return val if split == "val" else train
