"""`dunet analyse RUN VIDEO... [--filter median|oneeuro] [--out DIR]`: per-frame points and scores as CSV
and in DeepLabCut's HDF5 layout, a labelled video and a trajectory plot per body part
(`dunet.analysis.analyse_video`)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from dunet.commands import add_model_flags

    p = sub.add_parser("analyse", help="analyse videos: points per frame (CSV, DeepLabCut HDF5), labelled "
                                       "video, trajectory plots")
    p.add_argument("checkpoint", nargs="?", help="run directory, checkpoint, .safetensors, .onnx or OpenVINO .xml model")
    p.add_argument("videos", nargs="*", help="videos to analyse")
    p.add_argument("--out", default="analysed", help="output folder (default: analysed)")
    p.add_argument("--filter", default="none", choices=["none", "median", "oneeuro"],
                   help="median: over 5 frames, in the tables and plots; oneeuro: while predicting (the labelled "
                        "video shows it too)")
    p.add_argument("--no-video", action="store_true", help="no labelled video")
    p.add_argument("--no-plots", action="store_true", help="no trajectory plots")
    add_model_flags(p, batch_size=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dunet import DunetError, load
    from dunet.analysis import analyse_video, output_names
    from dunet.commands import check_out, model_and_inputs

    checkpoint, videos = model_and_inputs(args.checkpoint, args.videos, args.model)
    target = checkpoint or args.model
    if target is None or not videos:
        raise DunetError("give a model (a run directory, or --model NAME) and at least one video")
    out = Path(args.out)
    check_out(out, folder=True)
    for video in videos:  # a missing video is one line before the model loads
        if not Path(video).is_file():
            raise DunetError(f"{video}: no such video file")
    landmarker = load(target, backend=args.backend, device=args.device, precision=args.precision,
                      flip=args.flip, batch_size=args.batch_size, threads=args.threads)
    names = output_names(videos)
    renamed = [f"{video} -> {name}" for video, name in zip(videos, names) if name != Path(video).stem]
    if renamed:  # their outputs would overwrite each other's
        print(f"note: videos share a file name, so their outputs are named apart: {', '.join(renamed)}")
    frames = seconds = 0.0
    for video, name in zip(videos, names):
        result = analyse_video(landmarker, video, out, filter=args.filter, labelled=not args.no_video,
                               plots=not args.no_plots, name=name)
        print(result.line())
        frames, seconds = frames + len(result.frames), seconds + result.seconds
    if len(videos) > 1:
        print(f"{len(videos)} videos: {int(frames)} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s)")
    return 0
