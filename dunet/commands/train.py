"""`dunet train CONFIG.yaml [--out RUN_DIR] [--set key=value ...] [--resume]`, or with no config file,
`dunet train --data FORMAT:PATH|PROJECT [--val FORMAT:PATH] [--init RUN] --out RUN_DIR`: the own-data recipe
(dunet/engine/recipe.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model: on your own data (--data), or from a YAML recipe (see configs/)")
    p.add_argument("config", nargs="?", help="YAML recipe; optional with --resume (the run's own config is used) "
                                              "and with --data")
    p.add_argument("--data", metavar="FORMAT:PATH|PROJECT",
                   help="your own labelled data, no config needed: fine-tunes the closest shipped model in about "
                        "--minutes on this machine, e.g. --data dlc:project/labeled-data/CollectedData_me.csv, or "
                        "a DeepLabCut project folder (every labeled-data/*/CollectedData_*.csv, merged)")
    p.add_argument("--init", metavar="RUN", default="",
                   help="with --data: refine this earlier run (its weights and input size) instead of a shipped model")
    p.add_argument("--val", metavar="FORMAT:PATH", default="",
                   help="with --data: held-out data to score on (default: 20 %% of --data)")
    p.add_argument("--minutes", type=float, default=10.0, help="with --data: the training time to plan for")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.epochs=10 --set model.units=8")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--options", action="store_true", help="list every config key with its default and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dunet import DunetError
    from dunet.commands import check_out
    from dunet.engine.config import describe_options, load_config
    from dunet.engine.trainer import resumed_config, train

    if args.options:
        print(describe_options())
        return 0
    if args.config is None and not args.resume and not args.data:
        raise DunetError("give your data (--data FORMAT:PATH), a config file (e.g. configs/demo.yaml), "
                         "or --resume with --out RUN_DIR")
    if args.init and not args.data:
        raise DunetError("--init RUN goes with --data (a recipe file sets `init:` itself)")
    if args.data and (args.config or args.resume):
        raise DunetError("--data builds its own recipe: leave out the config file (and --resume: a run resumes "
                         "with `dunet train --resume --out RUN_DIR`)")
    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if args.config else "run")
    check_out(out, folder=True)
    if not args.resume and (out / "last").exists():
        raise DunetError(f"{out} already holds a run: add --resume to continue it, or choose another --out")
    if args.data:
        if not args.minutes > 0:
            raise DunetError(f"--minutes {args.minutes}: must be > 0")
        cfg = _own_data_config(args)
    elif args.resume:
        cfg = resumed_config(out, args.overrides)
        if args.config is not None:
            _check_same_recipe(load_config(args.config, args.overrides), cfg, args.config, out)
    else:
        cfg = load_config(args.config, args.overrides)
    try:
        metrics = train(cfg, out, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    if metrics:  # the run held data out (and this is the process that owns the run directory)
        _score_held_out(out, cfg)
    return 0


def _score_held_out(out: Path, cfg) -> None:
    """Print the held-out figures of the checkpoint the run resolves to (best/, else last/), measured by
    `dunet eval OUT --split val` with its default flags (backend, precision, threads, no flip test): the model
    and the figure that eval and predict reproduce. PyTorch's per-epoch figures stay in log.csv; a converted
    network (OpenVINO, bf16) rounds differently, so they can differ from these by a point or so."""
    from dunet.commands.eval import default_args, measure, measured_line
    from dunet.metrics import format_table

    argv = [str(out), "--split", "val"] + (["--skip-bad"] if cfg.data.skip_bad else [])
    print(f"held-out figures of the trained model, as `dunet eval {' '.join(argv)}` gives them "
          f"(`dunet predict {out}` runs it the same way):", flush=True)
    metrics, measured = measure(default_args(argv))
    print(measured_line(measured))
    print(format_table(metrics))


def _own_data_config(args: argparse.Namespace):
    from dunet import DunetError
    from dunet.data.readers import combine_sources, open_source
    from dunet.engine.recipe import own_data_config

    # Reading the labels and timing training steps at each input size can take a minute or more: say so first.
    print(f"own-data recipe: reading {args.data}, then timing a few training steps on this machine to size "
          f"the run to --minutes {args.minutes:g} (a minute or two)", flush=True)
    data = [args.data]
    if Path(args.data).is_dir():  # a DeepLabCut project: its label files, merged
        from dunet.project import project_data

        data = project_data(args.data)
    source = combine_sources([open_source(name) for name in data])
    if args.val:
        val = open_source(args.val)
        if val.spec.keypoints != source.spec.keypoints:
            raise DunetError(f"--val {args.val} has keypoints {list(val.spec.keypoints)} but --data {args.data} "
                             f"has {list(source.spec.keypoints)}; they must be the same, in the same order")
    if args.init and not Path(args.init).exists():
        raise DunetError(f"--init {args.init}: no such run or checkpoint")
    cfg, lines = own_data_config(data, args.val, source, args.minutes, args.overrides, init_run=args.init)
    print("\n".join(lines), flush=True)
    return cfg


def _check_same_recipe(from_file, from_run, config_path: str, out: Path) -> None:
    """--resume continues a run with its own config; a recipe file given beside it must agree, or the
    run would silently go on with other settings (another input size, say) than it started with."""
    from dunet import DunetError
    from dunet.engine.config import config_differences

    differ = [f"{key} ({mine!r} in {config_path}, {theirs!r} in the run)"
              for key, mine, theirs in config_differences(from_file, from_run)]
    if differ:
        raise DunetError(f"--resume continues {out} with its own config ({out / 'config.yaml'}), and {config_path} "
                         f"differs from it in {', '.join(differ)}. Leave {config_path} out to continue the run "
                         "(--set changes a key), or train the recipe into another --out")
