"""`dunet export CHECKPOINT --format {safetensors,packed,onnx} --out FILE`"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained model: one-file safetensors, packed (1-2 bit) or ONNX")
    p.add_argument("checkpoint", help="checkpoint or run directory (or a pretrained model name)")
    p.add_argument("--format", required=True, choices=["safetensors", "packed", "onnx"],
                   help="safetensors: one file with config; packed: quantized weights at 1 bit (BW) or 2 bits "
                        "(TW); onnx: for onnxruntime and other runtimes")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--fixed-batch", action="store_true", help="onnx: batch fixed to 1 instead of dynamic")
    p.add_argument("--int8", metavar="FORMAT:PATH|dynamic",
                   help="onnx: also write FILE-int8.onnx; FORMAT:PATH = static int8 calibrated on up to 32 samples "
                        "of this data; 'dynamic' = activation scales computed per batch at run time (no data)")
    p.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                   help="onnx: torch.export-based exporter (default) or the TorchScript one (several times faster "
                        "to export)")
    p.add_argument("--card", help="safetensors: a JSON model card stored in the file's metadata")
    p.add_argument("--half", action="store_true", help="safetensors: store weights as float16 (half the size)")
    p.add_argument("--int8-weights", action="store_true",
                   help="safetensors: conv weights as int8 with a scale per output channel (a quarter of float32)")
    p.add_argument("--decode-blur", type=float, metavar="SIGMA",
                   help="blur heatmaps by SIGMA (heatmap px) before sub-pixel decoding; default: the model's decode_blur")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from dunet import DunetError
    from dunet.engine.config import config_to_dict
    from dunet.engine.inference import LandmarkModel, spec_to_dict

    runner = LandmarkModel.load(args.checkpoint)
    runner.set_decode_blur(args.decode_blur)
    config = {**config_to_dict(runner.config), "spec": spec_to_dict(runner.spec)}
    model = runner.model.float().to(memory_format=torch.contiguous_format)
    out = Path(args.out)
    if args.format == "safetensors":
        from dunet.checkpoint import save_checkpoint

        if out.suffix != ".safetensors":
            raise DunetError(f"{out}: the file name must end in .safetensors")
        card = json.loads(Path(args.card).read_text()) if args.card else None
        save_checkpoint(out, model.half() if args.half else model, config, metrics=card,
                        int8_weights=args.int8_weights)
    elif args.format == "packed":
        from dunet.quant.packing import save_packed

        if runner.config.model.quant == "none":
            raise DunetError(f"{args.checkpoint}: a full-precision model has nothing to pack; "
                             "train with model.quant (e.g. bw-alpha) or use --format safetensors")
        save_packed(model, config, out)
    else:
        from dunet.deploy.onnx_export import export_onnx

        meta = {"train_config": json.dumps(config_to_dict(runner.config)), "spec": json.dumps(spec_to_dict(runner.spec))}
        opts = dict(dynamic_batch=not args.fixed_batch, metadata=meta, exporter=args.exporter)
        export_onnx(model, out, runner.input_size, **opts)
        if args.int8:
            from dunet.data.dataset import LandmarkDataset
            from dunet.data.readers import open_source
            from dunet.deploy.int8 import quantize_onnx_int8

            calibration, mode = None, "dynamic"
            if args.int8 != "dynamic":
                source = open_source(args.int8)
                dataset = LandmarkDataset(source, input_size=runner.input_size, augment=False)
                calibration = [dataset[i]["image"][None].numpy() for i in range(min(32, len(dataset)))]
                mode = "static"
            int8_path = out.with_name(out.stem + "-int8.onnx")
            # int8 quantizes activations itself: export without the models' own k-bit input quantizers.
            float_path = out.with_name(out.stem + "-float-for-int8.onnx")
            export_onnx(model, float_path, runner.input_size, keep_input_quantizers=False, **opts)
            quantize_onnx_int8(float_path, int8_path, calibration, mode=mode)
            float_path.unlink()
            print(f"wrote {int8_path}")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return 0
