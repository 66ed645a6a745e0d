"""The inputs the documentation names (photo.jpg, clip.mp4, runs/mine, 300w/ibug, ...), made small from the real
data in ../shared/data so that every snippet runs in seconds: a handful of faces, people and mouse frames,
videos of a few frames. `../shared/data/...` in a page resolves to a copy whose video is cut to 60 frames."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from tests.docs.snippets import REPO

OPENFIELD = "dlc_openfield/labeled-data/m4s1/CollectedData_Pranav.csv"


def make_root(shared_data: Path, root: Path) -> None:
    """root/inputs: the files every page names; root/shared/data: a cut of the real data, for the pages that
    name ../shared/data (each page runs in its own root/PAGE folder, as the project root lies beside ../shared)."""
    make_inputs(shared_data, root / "inputs")
    data = root / "shared" / "data" / "dlc_openfield"
    (data / "videos").mkdir(parents=True)
    for name in ("config.yaml", "labeled-data"):
        (data / name).symlink_to(shared_data / "dlc_openfield" / name)
    cut_video(shared_data / "dlc_openfield/videos/m3v1mp4.mp4", data / "videos/m3v1mp4.mp4", frames=60)
    (root / "shared" / "data" / "fixtures").symlink_to(shared_data / "fixtures")  # small already: used as they are


def make_inputs(shared: Path, out: Path) -> None:
    out.mkdir()
    (out / "runs").mkdir()
    (out / "configs").symlink_to(REPO / "configs")
    faces = sorted(shared.glob("300w/*.jpg"))
    # Faces: photos, a video of one face moving, 300-W folders for eval and training.
    shutil.copy(faces[0], out / "photo.jpg")
    (out / "photos").mkdir()
    for face in faces[1:3]:
        shutil.copy(face, out / "photos" / face.name)
    write_video(out / "clip.mp4", [shifted(cv2.imread(str(faces[0])), 2 * i) for i in range(8)])
    copy_300w(faces[3:9], out / "300w" / "ibug")
    copy_300w(faces[9:19], out / "300w-train")
    # People: LSP and LSP-extended cut to a few people each; runner.jpg and team.jpg large enough for the boxes.
    cut_lsp(shared / "lsp", out / "lsp", range(10), "lsp")
    cut_lsp(shared / "lsp", out / "lsp-test", range(10, 16), "lsp")
    cut_lsp(shared / "lspet", out / "lspet_dataset", range(10), "lspet")
    # LSP's pictures are cut close around the person; with room around them the person detector finds them.
    person = cv2.resize(cv2.imread(str(shared / "lsp/images/im0001.jpg")), (360, 480))
    runner = np.zeros((640, 720, 3), np.uint8)
    runner[80:560, 180:540] = person
    team = np.zeros((640, 1200, 3), np.uint8)
    team[80:560, 120:480] = team[80:560, 720:1080] = person
    cv2.imwrite(str(out / "runner.jpg"), runner)
    cv2.imwrite(str(out / "team.jpg"), team)
    write_video(out / "run.mp4", [shifted(runner, i) for i in range(44)], fps=2.0)  # 22 s: --start 5 --end 20
    write_video(out / "match.mp4", [shifted(team, i) for i in range(6)])
    # Your own keypoints: a DeepLabCut project of 12 mouse frames, a COCO file, a mouse video and frame.
    cut_dlc(shared / OPENFIELD, out / "project/labeled-data/video1/CollectedData_me.csv", 12)
    cut_dlc(shared / OPENFIELD, out / "openfield-Pranav-2018-10-30/labeled-data/m4s1/CollectedData_Pranav.csv", 12)
    shutil.copy(shared / "dlc_openfield/config.yaml", out / "openfield-Pranav-2018-10-30/config.yaml")
    mouse = shared / "dlc_openfield/videos/m3v1mp4.mp4"
    for video in ("video.mp4", "videos/m3v1.mp4", "openfield-Pranav-2018-10-30/videos/m3v1mp4.mp4"):
        (out / video).parent.mkdir(parents=True, exist_ok=True)
        cut_video(mouse, out / video, frames=10)
    shutil.copy(shared / "dlc_openfield/labeled-data/m4s1/img0000.png", out / "frame.png")
    frames = sorted((out / "openfield-Pranav-2018-10-30/labeled-data/m4s1").glob("*.png"))
    write_video(out / "m4s1.mp4", [cv2.imread(str(frame)) for frame in frames])  # own_data.md makes it so
    coco = shared / "fixtures/coco"
    shutil.copytree(coco, out / "my_images", ignore=shutil.ignore_patterns("*.json"))
    shutil.copy(coco / "test_coco.json", out / "my.json")
    (out / "images").symlink_to("my_images")


def pose_page(inputs: Path, page: Path) -> None:
    """pose.md's photos/ are people, with a box each in boxes.csv."""
    (page / "photos").unlink()
    (page / "photos").mkdir()
    rows = [["image", "x", "y", "w", "h"]]
    for name in ("runner.jpg", "team.jpg"):
        shutil.copy(inputs / name, page / "photos" / name)
        rows.append([name, 100, 40, 200, 420])
    with open(page / "boxes.csv", "w", newline="") as file:
        csv.writer(file).writerows(rows)


def loop_page(inputs: Path, page: Path) -> None:
    """own_data_loop.md refines on my_project once the reader has labelled it: here a labelled project of 12
    frames, into which `dunet frames` and `dunet outliers` write as they would into the reader's."""
    (page / "my_project").mkdir()
    shutil.copy(inputs / "openfield-Pranav-2018-10-30/config.yaml", page / "my_project/config.yaml")
    shutil.copytree(inputs / "openfield-Pranav-2018-10-30/labeled-data", page / "my_project/labeled-data")


# What a page's snippets expect beyond the common inputs: people in pose.md's photos/, a labelled my_project.
PAGE_INPUTS = {"docs/pose.md": pose_page, "docs/own_data_loop.md": loop_page}


def shifted(image: np.ndarray, dx: int) -> np.ndarray:
    return np.roll(image, dx, axis=1)


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()


def cut_video(source: Path, path: Path, frames: int) -> None:
    capture = cv2.VideoCapture(str(source))
    kept = [capture.read()[1] for _ in range(frames)]
    capture.release()
    write_video(path, kept, fps=30.0)


def copy_300w(images: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for image in images:
        shutil.copy(image, folder)
        shutil.copy(image.with_suffix(".pts"), folder)


def cut_lsp(source: Path, folder: Path, people: range, layout: str) -> None:
    """The first people of an LSP folder, renumbered from 1: joints.mat in the source's own layout + images/."""
    import scipy.io

    joints = scipy.io.loadmat(str(source / "joints.mat"))["joints"]
    joints = joints[..., people.start:people.stop]
    (folder / "images").mkdir(parents=True)
    digits = 4 if layout == "lsp" else 5
    for new, old in enumerate(people, 1):
        shutil.copy(source / f"images/im{old + 1:0{digits}d}.jpg", folder / f"images/im{new:0{digits}d}.jpg")
    scipy.io.savemat(str(folder / "joints.mat"), {"joints": joints, "first_index": 1})


def cut_dlc(table: Path, path: Path, frames: int) -> None:
    """A DeepLabCut label table's first frames, with their images, under another project and video name."""
    video = path.parent
    video.mkdir(parents=True)
    lines = table.read_text().splitlines()
    header, rows = lines[:3], lines[3:3 + frames]
    kept = []
    for row in rows:
        image, rest = row.split(",", 1)
        shutil.copy(table.parents[2] / image, video / Path(image).name)
        kept.append(f"labeled-data/{video.name}/{Path(image).name},{rest}")
    path.write_text("\n".join(header + kept) + "\n")
