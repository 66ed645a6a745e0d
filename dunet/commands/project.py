"""`dunet project`: create a project folder in DeepLabCut's layout (empty, or adopting a COCO keypoints file's
labels), or show what one holds."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="create or show a project folder (DeepLabCut's layout)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="create a project folder for your own points")
    new.add_argument("path", metavar="NAME", help="the folder to create")
    new.add_argument("--points", help="body part names, comma-separated: snout,leftear,rightear")
    new.add_argument("--coco", metavar="FILE.json[:IMAGE_DIR]",
                     help="adopt a COCO keypoints file instead: its keypoints and skeleton, and its labelled "
                          "images (copied; an image with several animals cut into one frame per animal)")
    new.add_argument("--skeleton", default="", help="lines to draw between points: snout-leftear,snout-rightear")
    new.add_argument("--videos", nargs="*", default=[], help="videos whose frames you will label")
    new.add_argument("--scorer", default="dunet", help="who labels (DeepLabCut's `scorer`; default dunet)")
    show = actions.add_parser("show", help="the points, frames and labels of a project (dunet's or DeepLabCut's)")
    show.add_argument("path", metavar="PROJECT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from dunet import DunetError
    from dunet.project import coco_project, new_project, open_project

    if args.action == "new" and args.coco:
        if args.points or args.skeleton or args.videos:
            raise DunetError("--coco takes the points and skeleton from the COCO file: leave out --points, "
                             "--skeleton and --videos")
        project, line = coco_project(args.path, args.coco, args.scorer)
        print(f"created {project.root}: {len(project.points)} points ({', '.join(project.points)})")
        print(line)
    elif args.action == "new":
        if not args.points:
            raise DunetError("give the points (--points snout,leftear,...) or a COCO file to adopt (--coco FILE.json)")
        edges = [e.strip() for e in args.skeleton.split(",") if e.strip()]
        if any(e.count("-") != 1 for e in edges):
            raise DunetError(f"--skeleton {args.skeleton}: give edges as a-b,b-c")
        project = new_project(args.path, args.points.split(","), [tuple(e.split("-")) for e in edges],
                              args.videos, args.scorer)
        print(f"created {project.root}: {len(project.points)} points ({', '.join(project.points)})")
    else:
        project = open_project(args.path)
        print(f"{project.root}: {len(project.points)} points ({', '.join(project.points)}), scorer {project.scorer}")
    frames = set(project.frames())
    for video in project.videos:
        labels = project.labels(video)
        images = [f for f in frames if f.split("/")[1] == video]
        labelled = sum(1 for xy in labels.frames.values() if not np.isnan(xy).all())
        gone = sorted(set(labels.frames) - frames)
        print(f"  {video}: {len(images)} frames, {labelled} labelled, in {project.label_file(video).name}"
              + (f"; {len(gone)} labelled frames have no image (labels kept): {', '.join(gone[:3])}" if gone else ""))
    if not project.videos:
        print(f"  no frames yet: put images in {project.root}/labeled-data/VIDEO/, then `dunet label {project.root}`")
    return 0
