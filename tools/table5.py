"""Paper Table 5 at CPU scale: NME, training-memory ratio, model-size ratio and balance index of the
fp32 and quantized DU-Net(4) runs trained with configs/300w_quant.yaml (from scratch, 64 px) or
configs/300w_quant_finetune.yaml (fine-tuned from 300w-dunet4, 128 px). Run by hand after training:

    .venv/bin/python tools/table5.py runs/t5/fp32 runs/t5/bw ... \
        --memory bench/results/memory_table5.json --out bench/results/table5.json [--checkpoint last]

- NME: inter-ocular NME (%) of each run's best (or last) checkpoint, measured here on the run's held-out split.
- Training memory: quantized / fp32 peak training memory from a bench/memory.py JSON (same run for all
  rows, the recipe's input size and batch), looked up by quant spec.
- Model size: bytes of the packed file (dunet.quant.packing) / bytes of the fp32 safetensors file.
- Balance index (paper eq. 7): NME^2 x training-memory ratio x model-size ratio.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import save as safetensors_bytes

# Paper Table 5 (300-W full set NME, training memory, model size, balance index), keyed by our spec.
PAPER = {
    "none": ("DU-Net(4) fp32", 3.38, 1.00, 1.00, 11.4),
    "bw": ("BW", 3.75, 1.00, 0.03, 0.42),
    "bw-alpha": ("BW-α", 3.58, 1.00, 0.03, 0.38),
    "tw": ("TW", 3.73, 1.00, 0.06, 0.83),
    "8/1/8": ("BW-QIG 8/1/8", 4.30, 0.25, 0.03, 0.14),
    "6/1/6": ("BW-QIG 6/1/6", 5.93, 0.17, 0.03, 0.18),
    "8/2/8": ("TW-QIG 8/2/8", 4.13, 0.25, 0.06, 0.26),
}
BITS = {"none": "32/32/32", "bw": "32/1/32", "bw-alpha": "32/1/32", "tw": "32/2/32", "bw-alpha-1/1/32": "1/1/32"}


def measure(run: Path, memory: dict[str, float], checkpoint: str = "best") -> dict:
    from dunet.data.readers import open_source
    from dunet.engine.evaluate import predict_source, score
    from dunet.engine.inference import load_torch_model
    from dunet.engine.trainer import split_indices
    from dunet.quant.packing import packed_size_bytes

    runner = load_torch_model(run / checkpoint, precision="fp32")
    cfg = runner.config  # the training config: where the held-out split comes from
    source = open_source(cfg.data.train[0])  # the held-out split comes off the first source
    _, val_idx = split_indices(len(source), cfg.data.val_fraction, cfg.data.split_seed)
    pred, idx = predict_source(runner.predict_crops, source, runner.input_size, indices=val_idx)
    metrics = score(source, pred, idx)
    quant = runner.card.network.quant
    model = runner.model.float()
    fp32_bytes = len(safetensors_bytes({k: v.float().contiguous() for k, v in model.state_dict().items()
                                        if v.is_floating_point()}))
    size_ratio = 1.0 if quant == "none" else packed_size_bytes(model) / fp32_bytes
    memory_ratio = memory[quant] / memory["none"]
    nme = metrics["nme_io"]
    epochs = sum(1 for _ in open(run / "log.csv")) - 1
    return {"run": str(run), "checkpoint": checkpoint, "quant": quant, "epochs": epochs, "samples": len(idx), "nme_io": nme,
            "nme_ip": metrics.get("nme_ip"), "training_memory": memory_ratio, "model_size": size_ratio,
            "fp32_bytes": fp32_bytes, "balance_index": nme**2 * memory_ratio * size_ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--memory", type=Path, default=Path("bench/results/memory_table5.json"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/table5.json"))
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="last for fine-tuned rows: not selected on the held-out faces it is scored on")
    args = parser.parse_args()
    rows_by_quant = {r["quant"]: r["train_bytes"] for r in json.loads(args.memory.read_text())["rows"]}
    rows = [measure(run, rows_by_quant, args.checkpoint) for run in args.runs]
    print("| run | scheme | I/W/G | NME-io % (ours) | train memory | model size | BI | paper NME | paper TM | paper MS | paper BI |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        name, p_nme, p_tm, p_ms, p_bi = PAPER.get(row["quant"], (row["quant"], "", "", "", ""))
        print(f"| {Path(row['run']).name} | {name} | {BITS.get(row['quant'], row['quant'])} | {row['nme_io']:.2f} | "
              f"{row['training_memory']:.2f} | {row['model_size']:.3f} | {row['balance_index']:.2f} | {p_nme} | {p_tm} | "
              f"{p_ms} | {p_bi} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "memory": str(args.memory)}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
