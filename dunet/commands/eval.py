"""`dunet eval (CHECKPOINT | --model NAME) --data FORMAT:PATH [--json] [--flip]`, or `dunet eval RUN --split val`:
the held-out data the model was trained beside. `dunet train` ends by scoring its run through `measure`, with
this command's default flags, so the figure it prints is the one this command gives."""

from __future__ import annotations

import argparse
import json

from dunet import DunetError

from dunet.commands import add_decode_blur_flag, add_model_flags
from dunet.config import flag_range


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model on a data set and print its metrics")
    p.add_argument("checkpoint", nargs="?", help="checkpoint or run directory, or a .safetensors / packed / .onnx / OpenVINO .xml model")
    p.add_argument("--data", help="FORMAT:PATH, e.g. 300w:/path/to/300w (docs/data.md); with --split val or train "
                                  "it defaults to the model's own training data (its held-out file, data.val, if "
                                  "it had one)")
    add_model_flags(p, batch_size=16)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ced", metavar="PNG", help="write the cumulative error distribution plot here")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable samples instead of failing")
    p.add_argument("--split", default="all", choices=["all", "val", "train"],
                   help="val / train: only the held-out / training part of --data, split as the model's training "
                        "config split it (data.val_fraction, data.split_seed), or all of data.val if training "
                        "held out a file of its own; reproduces a model card's numbers and what `dunet train` printed")
    p.add_argument("--limit", type=flag_range(int, 0), default=0, help="evaluate only the first N samples (0 = all)")
    add_decode_blur_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dunet.metrics import format_table

    metrics, measured = measure(args)
    if args.json:
        print(json.dumps({**metrics, "measured": measured}))
    else:
        print(measured_line(measured))
        print(f"crops: {measured['box']}; decode blur {measured['decode_blur']} heatmap px")
        print(format_table(metrics))
    return 0


def measure(args: argparse.Namespace) -> tuple[dict, dict]:
    """(metrics, what measured them) of the model and data that eval's flags `args` name."""
    from dunet.data.readers import open_source
    from dunet.engine.evaluate import confidence_report, errors_per_sample, predict_source, score
    from dunet.metrics import plot_ced
    from dunet.runtime.model import load_model

    if (args.checkpoint is None) == (args.model is None):
        raise DunetError("give either a CHECKPOINT path or --model NAME")
    runner = load_model(args.checkpoint or args.model, backend=args.backend, precision=args.precision,
                        device=args.device, threads=args.threads)
    runner.set_decode_blur(args.decode_blur)
    data = args.data or split_data(runner.config, args.split)
    source = open_source(data, skip_bad=args.skip_bad)
    runner.check_source(source)
    indices = split_of(runner.config, len(source), args.split, data)
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
    return metrics, what_was_measured(runner, source, data, len(idx), args)


def measured_line(measured: dict) -> str:
    """Two lines: the model and what ran it, the data and how it was scored."""
    threads = f", {measured['threads']} thread(s)" if measured["threads"] else ""
    split = "" if measured["split"] == "all" else f", {measured['split']} split"
    return (f"scored {measured['model']} ({measured['network']}, {measured['backend']} backend, "
            f"{measured['precision']}{threads})\n"
            f"on {measured['data']} ({measured['samples']} samples{split}, {'flip test' if measured['flip'] else 'no flip test'})")


def default_args(argv: list[str]) -> argparse.Namespace:
    """The flags of `dunet eval ARGV`, every one not given at its default: what another command passes to
    `measure` to score a model exactly as this command would."""
    parser = argparse.ArgumentParser(prog="dunet")
    add_parser(parser.add_subparsers())
    return parser.parse_args(["eval", *argv])


def what_was_measured(runner, source, data: str, samples: int, args: argparse.Namespace) -> dict:
    """How the figures were obtained, for the header and --json: a figure means little without it."""
    return {"model": str(runner.source), "network": runner.name, "backend": runner.backend,
            "precision": runner.precision, "threads": runner.threads, "data": data, "samples": samples,
            "split": args.split,
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


def split_data(config, split: str) -> str:
    """The data --split scores when --data is not given: the training config's held-out file, else its first
    training source (the one the held-out fraction came off)."""
    if split == "all":
        raise DunetError("give the data to score: --data FORMAT:PATH (--split val or train alone scores the "
                         "model's own training data)")
    return config.data.val if config.data.val and split == "val" else config.data.train[0]


def split_of(config, count: int, split: str, data: str) -> list[int]:
    """Sample indices of --split: all of them, or the training config's held-out / training part."""
    import sys

    from dunet.engine.trainer import split_indices

    if split == "all":
        return list(range(count))
    if config.data.val:  # training held out a file of its own: --split val is all of it
        if split == "val" and data != config.data.val:
            raise DunetError(f"--split val: the model was trained with the held-out data {config.data.val} "
                             f"(data.val), not {data}; leave out --data to score it, or use --split all")
        return list(range(count))
    fraction, seed = config.data.val_fraction, config.data.split_seed
    if fraction <= 0:
        raise DunetError(f"--split {split}: the model was not trained with a held-out fraction of its data "
                         f"(data.val_fraction {fraction}, data.val {config.data.val!r}); use --split all")
    first = config.data.train[0]  # with several training sources, the held-out split came off the first
    if data != first:
        print(f"note: --split {split} of {data}: drawn as from the model's training data ({fraction:.0%} held out, "
              f"split_seed {seed}, over the samples in order); the same samples only if it is the same data, laid "
              "out the same way (docs/data.md)", file=sys.stderr)
    train, val = split_indices(count, fraction, seed)
    return val if split == "val" else train
