"""`dunet outliers RUN VIDEO [--count N] [--project PROJECT]`: the frames where the model is likely wrong,
written into the project for correction with the model's points as proposals (`dunet.analysis.find_outliers`)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from dunet.commands import add_model_flags
    from dunet.config import flag_range

    p = sub.add_parser("outliers", help="find the frames of a video where the model is likely wrong, for correction")
    p.add_argument("checkpoint", help="run directory, checkpoint or model file (or a pretrained model's name)")
    p.add_argument("video", help="the video to look through")
    p.add_argument("--count", type=flag_range(int, 1), default=20, metavar="N", help="how many frames (default 20)")
    p.add_argument("--project", metavar="PROJECT",
                   help="where labeled-data/VIDEO/ goes (default: the project the video lies in, else here)")
    p.add_argument("--min-score", type=flag_range(float, 0.0, 1.0), default=0.5,
                   help="a body part scoring below this makes a frame suspect (default 0.5)")
    add_model_flags(p, batch_size=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from dunet import load
    from dunet.analysis import find_outliers
    from dunet.project import video_frames

    video_frames(args.video)  # a missing or undecodable video is one line before the model loads
    landmarker = load(args.checkpoint, backend=args.backend, device=args.device, precision=args.precision,
                      flip=args.flip, batch_size=args.batch_size, threads=args.threads)
    found = find_outliers(landmarker, args.video, args.count, args.project, min_score=args.min_score)
    if not found.frames:
        print(f"{args.video}: no suspect frame (every score >= {args.min_score}, no jumps, usual lengths)")
        return 0
    why = ", ".join(f"{n} by {reason}" for reason, n in Counter(found.reasons).most_common())
    print(f"{args.video}: {len(found.frames)} suspect frame(s) ({why}) -> {found.images[0].parent}/; "
          f"the model's points as proposals in {found.labels}")
    return 0
