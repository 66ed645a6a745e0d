"""`dunet frames VIDEO [--count N] [--method kmeans|uniform] [--out PROJECT_OR_DIR]`: frames worth labelling,
written as DeepLabCut's labeled-data/VIDEO/imgNNNN.png (`dunet.project.extract_frames`)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from dunet.config import flag_range

    p = sub.add_parser("frames", help="pick frames of a video to label (k-means over its appearance, or uniform)")
    p.add_argument("video", help="the video to pick frames from")
    p.add_argument("--count", type=flag_range(int, 1), default=20, metavar="N", help="how many frames (default 20)")
    p.add_argument("--method", default="kmeans", choices=["kmeans", "uniform"],
                   help="kmeans: one frame per cluster of similar-looking frames; uniform: evenly spaced")
    p.add_argument("--out", metavar="PROJECT_OR_DIR",
                   help="where labeled-data/VIDEO/ goes (default: the project the video lies in, else here)")
    p.add_argument("--seed", type=int, default=0, help="k-means seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dunet.project import extract_frames

    paths = extract_frames(args.video, args.count, args.method, args.out, seed=args.seed)
    print(f"{args.video}: {len(paths)} frame(s) by {args.method} -> {paths[0].parent}/ "
          f"({', '.join(p.name for p in paths[:3])}{', ...' if len(paths) > 3 else ''})")
    return 0
