"""Pack a recipe's training and held-out data into one file that travels to a GPU machine (tools/gpu_train.py):

    .venv/bin/python tools/pack_data.py configs/300w_dunet8_gpu.yaml --out packs/300w.npz

The split is the project's own (`build_data` of dunet/engine/trainer.py: `data.val_fraction` off the first source,
seed `data.split_seed`, or all of `data.val`), and the pack records it, so that the trainer refuses a pack of
another split. What the file holds:

- every training sample as a square JPEG crop around its box, CONTEXT x the crop the CPU pipeline takes (box side x
  the spec's box_margin), so that zooming out by the recipe's scale range and rotating stay inside it (300-W's own
  images were cut at about that), resized to --size px; its keypoints moved into the crop;
- every held-out sample as its original image file, unchanged, with its box and keypoints: the trainer crops it with
  the evaluator's own code, so the figure it reports is the one `dunet eval RUN --split val` gives;
- the landmark spec and the recipe's data keys, as JSON.

A plain .npz read with allow_pickle=False: images of varying length are one byte array plus offsets.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script, on a machine where dunet is not installed (a GPU machine)
    sys.path.insert(0, str(REPO))

from dunet import DunetError  # noqa: E402
from dunet.data.sample import Sample, Source  # noqa: E402

FORMAT, VERSION = "dunet-pack", 1
# Stored crop side / the pipeline's crop side: a crop zoomed out 1.25x and turned 30 degrees reaches 1.71x at its
# corners; 300-W's images end at about 1.6x (twice the landmark box), so the CPU pipeline sees black there too.
CONTEXT = 1.6
JPEG_QUALITY = 90  # 300-W at 320 px: q90 24 MiB, q95 33 MiB (1,086 crops); the checkout itself takes 25 MiB of 64
# The recipe's data keys that decide the split; a pack made under other values is another split.
SPLIT_KEYS = ("train", "val", "val_fraction", "split_seed", "normaliser")
ARRAYS = ("meta", "train_bytes", "train_offsets", "train_keypoints", "train_visible", "val_bytes", "val_offsets",
          "val_keypoints", "val_visible", "val_center", "val_scale", "val_head_size", "val_object_size")


def split_of(cfg) -> dict:
    return {key: getattr(cfg.data, key) if key != "train" else list(cfg.data.train) for key in SPLIT_KEYS}


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _encode(rgb: np.ndarray, ext: str, quality: int = JPEG_QUALITY) -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, data = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise DunetError(f"could not encode a {rgb.shape} image as {ext}")
    return data.tobytes()


def _original_bytes(source: Source, index: int) -> bytes:
    """The held-out image as the evaluator reads it: the file itself where it decodes to the very pixels the data
    source gives, else a lossless PNG of them (a generated image, say)."""
    from dunet.data.images import load_image

    pixels = source.load_image(index)
    path = Path(source.samples[index].image_path)
    if path.is_file():
        data = path.read_bytes()
        if np.array_equal(load_image(io.BytesIO(data)), pixels):
            return data
    return _encode(pixels, ".png")


def build_pack(cfg, size: int, quality: int = JPEG_QUALITY, context: float = CONTEXT,
               log=print) -> dict[str, np.ndarray]:
    """The arrays of the pack of recipe `cfg`: training crops of `size` px, held-out originals, metadata."""
    from dunet.data.spec import spec_to_dict
    from dunet.data.transforms import apply_affine, crop_matrix, warp_image
    from dunet.engine.trainer import Distributed, build_data

    cfg = dataclasses.replace(cfg, max_val_samples=0)  # the pack holds the whole held-out split
    train_source, val_source, train_set, groups, val_idx = build_data(cfg, Distributed())
    train_idx = [i for group in groups for i in group]
    crops, keypoints, visible = [], [], []
    for n, i in enumerate(train_idx):
        sample = train_source.samples[i]
        matrix = crop_matrix(sample.center, train_set.crop_side(i) * context, size)
        crops.append(_encode(warp_image(train_source.load_image(i), matrix, size), ".jpg", quality))
        keypoints.append(apply_affine(sample.keypoints, matrix))
        visible.append(sample.visible)
        if (n + 1) % 200 == 0:
            log(f"  {n + 1}/{len(train_idx)} training crops")
    held_out = [val_source.samples[i] for i in val_idx]
    meta = {"format": FORMAT, "version": VERSION, **split_of(cfg),
            # The held-out indices index this many samples: data.val, or the first training source.
            "split_size": len(val_source) if cfg.data.val else len(groups[0]) + len(val_idx),
            "train_size": len(train_source), "train_ids": train_idx, "held_out": val_idx,
            "held_out_files": [Path(s.image_path).name for s in held_out],
            "spec": spec_to_dict(train_source.spec), "crop": {"size": size, "context": context, "quality": quality}}
    train_bytes, train_offsets = _concat(crops)
    val_bytes, val_offsets = _concat([_original_bytes(val_source, i) for i in val_idx])
    return {
        "meta": np.array(json.dumps(meta)),
        "train_bytes": train_bytes, "train_offsets": train_offsets,
        "train_keypoints": np.array(keypoints, np.float32), "train_visible": np.array(visible, np.float32),
        "val_bytes": val_bytes, "val_offsets": val_offsets,
        "val_keypoints": np.array([s.keypoints for s in held_out], np.float32),
        "val_visible": np.array([s.visible for s in held_out], np.float32),
        "val_center": np.array([s.center for s in held_out], np.float32),
        "val_scale": np.array([s.scale for s in held_out], np.float64),
        # What the "head" and "bbox" normalisers read (dunet.data.sample.normalisers); NaN = not given.
        "val_head_size": np.array([s.meta.get("head_size", np.nan) for s in held_out], np.float64),
        "val_object_size": np.array([s.meta.get("object_size", np.nan) for s in held_out], np.float64),
    }


def write_pack(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a cut-off write never leaves a pack that looks whole. Not compressed: JPEGs don't shrink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


@dataclasses.dataclass
class Pack:
    path: Path
    meta: dict
    arrays: dict[str, np.ndarray]

    @property
    def spec(self):
        from dunet.data.spec import spec_from_dict

        return spec_from_dict(self.meta["spec"])

    def _images(self, prefix: str) -> list[np.ndarray]:
        """Decoded (H, W, 3) uint8 RGB images, by the loader every data set goes through."""
        from dunet.data.images import load_image

        data, offsets = self.arrays[f"{prefix}_bytes"], self.arrays[f"{prefix}_offsets"]
        images = []
        for i in range(len(offsets) - 1):
            try:
                images.append(load_image(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())))
            except DunetError as err:
                raise DunetError(f"{self.path}: damaged {prefix} image {i} ({str(err).split(': ', 1)[-1]})") from None
        return images

    def train_crops(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 crops, (N, K, 2) keypoints in crop pixels, (N, K) visibility."""
        crops = np.stack(self._images("train"))
        return crops, self.arrays["train_keypoints"], self.arrays["train_visible"]

    def held_out(self) -> Source:
        """The held-out samples as a data source of the project (decoded once), ready for its evaluator."""
        images = self._images("val")
        a = self.arrays
        samples = []
        for i in range(len(images)):
            meta = {"pack_index": i}
            for key in ("head_size", "object_size"):
                if np.isfinite(a[f"val_{key}"][i]):
                    meta[key] = float(a[f"val_{key}"][i])
            samples.append(Sample(self.meta["held_out_files"][i], a["val_keypoints"][i], a["val_visible"][i],
                                  a["val_center"][i], float(a["val_scale"][i]), meta))
        return Source(f"pack:{self.path}", self.spec, samples, loader=lambda s: images[s.meta["pack_index"]])


def open_pack(path: str | Path, cfg) -> Pack:
    """The pack at `path`, checked against recipe `cfg` before anything is decoded: a DunetError naming the file
    when it is missing, damaged, or holds another split or landmark set."""
    from dunet.engine.trainer import split_indices

    path = Path(path)
    if not path.is_file():
        raise DunetError(f"{path}: no such data pack; build it with `python tools/pack_data.py RECIPE --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in ARRAYS if name not in npz.files]
            if missing:
                raise DunetError(f"{path}: damaged data pack (no {missing[0]!r} array); build it again")
            arrays = {name: npz[name] for name in ARRAYS}
        meta = json.loads(str(arrays["meta"]))
    except DunetError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise DunetError(f"{path}: damaged data pack ({err or type(err).__name__}); build it again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DunetError(f"{path}: not a dunet data pack")
    if meta.get("version") != VERSION:
        raise DunetError(f"{path}: data pack version {meta.get('version')}; this dunet reads version {VERSION}")
    ours = split_of(cfg)
    for key in SPLIT_KEYS:
        if meta.get(key) != ours[key]:
            raise DunetError(f"{path}: packed from another split: its data.{key} is {meta.get(key)!r}, the "
                             f"recipe's {ours[key]!r}; build the pack from this recipe")
    held_out, train_ids = meta["held_out"], meta["train_ids"]
    expected = (list(range(meta["split_size"])) if cfg.data.val else
                split_indices(meta["split_size"], cfg.data.val_fraction, cfg.data.split_seed)[1])
    if held_out != expected or (not cfg.data.val and sorted(train_ids + held_out) != list(range(meta["train_size"]))):
        raise DunetError(f"{path}: its held-out samples are not the split of data.split_seed {cfg.data.split_seed}, "
                         f"data.val_fraction {cfg.data.val_fraction}; build the pack again")
    landmarks = len(meta["spec"]["keypoints"])
    if landmarks != cfg.model.landmarks:
        raise DunetError(f"{path}: holds {landmarks} landmarks per sample but the recipe's model.landmarks is "
                         f"{cfg.model.landmarks}")
    counts = {"train": len(train_ids), "val": len(held_out)}
    for prefix, count in counts.items():
        offsets = arrays[f"{prefix}_offsets"]
        if (len(offsets) != count + 1 or len(arrays[f"{prefix}_keypoints"]) != count
                or offsets[-1] != len(arrays[f"{prefix}_bytes"]) or (np.diff(offsets) <= 0).any()):
            raise DunetError(f"{path}: damaged data pack ({prefix} images and keypoints disagree); build it again")
    return Pack(path, meta, arrays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="the training recipe (YAML) whose data and split to pack")
    parser.add_argument("--out", required=True, type=Path, help="the pack file, e.g. packs/300w.npz (git-ignored)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, as `dunet train --set`")
    parser.add_argument("--size", type=int, default=0, help="side of the training crops in px; 0 = 1.25 x the "
                        "recipe's input size (320 for 256), at CONTEXT 1.6 about the resolution of 300-W's faces")
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality of the training crops")
    parser.add_argument("--context", type=float, default=CONTEXT, help="training crop side / the pipeline's crop "
                        "side; below 1.6, strong zooms and turns show black corners")
    args = parser.parse_args(argv)
    try:
        from dunet.engine.config import load_config

        cfg = load_config(args.recipe, args.overrides)
        size = args.size or round(1.25 * cfg.model.input_size)
        if not 16 <= size <= 2048 or not 1 <= args.quality <= 100 or not 1 <= args.context <= 4:
            raise DunetError(f"--size {size} must be in 16..2048, --quality {args.quality} in 1..100 and "
                             f"--context {args.context} in 1..4")
        write_pack(args.out, build_pack(cfg, size, args.quality, args.context))
        pack = open_pack(args.out, cfg)  # read back as the trainer will
    except DunetError as err:
        print(f"tools/pack_data.py: error: {err}", file=sys.stderr)
        return 2
    mib = args.out.stat().st_size / 2**20
    print(f"{args.out}: {len(pack.meta['train_ids'])} training crops ({size} px at context {args.context:g}, "
          f"JPEG q{args.quality}, "
          f"{pack.arrays['train_bytes'].nbytes / 2**20:.1f} MiB), {len(pack.meta['held_out'])} held-out images "
          f"({pack.arrays['val_bytes'].nbytes / 2**20:.1f} MiB); {mib:.1f} MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
