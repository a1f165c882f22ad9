"""The commands on a trained run: `frame eval`, `frame predict`, `frame export`.

Each parses its command line, then hands the run directory to the runtime module that does
the work (`frame.trained.evaluate`, `frame.trained.predict`, `frame.trained.export`); a user mistake (no such run,
no checkpoint, an unreadable file, a bad override) is one message and exit code 2.
"""

import sys
from pathlib import Path

from frame.cli.arguments import command_parser, flag
from frame.core.errors import FrameError, exit_with

_CHECKPOINT = (
    ["--checkpoint"],
    dict(
        default="best",
        metavar="best|last|NAME|PATH",
        help="which checkpoint: best (default), last, epoch-NNNN or a .pt file",
    ),
)
_DEVICE = (["--device"], dict(default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N"))
_TRUST = flag(
    "--trust",
    "build the checkpoint's stored config without refusing targets that load pickles or run commands "
    "(your own runs only)",
)
_RAW = flag(
    "--raw-weights", "the trained weights, not their moving average (runs with trainer.ema; what validation scored)"
)
_MODEL = (_CHECKPOINT, _DEVICE, _TRUST, _RAW)  # which weights, where, and whether the stored config is trusted
_OVERRIDES = (
    ["overrides"],
    dict(
        nargs="*",
        default=[],
        metavar="KEY=VALUE",  # a default: argparse calls it optional
        help="changes to the run's config, e.g. data.dataset.root=./data/test",
    ),
)


def eval(argv: list[str]) -> None:
    """Score a trained run's checkpoint on a data set (every item, no split); a sweep directory evaluates
    each member's checkpoint."""
    args = _parse(
        eval,
        argv,
        [
            *_MODEL,
            (["--name"], dict(help="names the result: RUN_DIR/eval/NAME.json (default: the dataset root's folder)")),
            flag("--per-item", "also write RUN_DIR/eval/NAME.csv, one row per item"),
            _OVERRIDES,
        ],
        run_dir="a run directory, or a sweep directory",
    )
    from frame.trained.evaluate import evaluate_run
    from frame.trained.runs import find_runs, run_name

    root = _existing(args.run_dir)
    members = (
        [root] if (root / "checkpoints").is_dir() else [d for d in find_runs(root) if (d / "checkpoints").is_dir()]
    )
    if not members:
        exit_with(f"{root} holds no trained run (no checkpoints/ in it or below it).")
    rows = []
    for member in members:
        try:
            result = evaluate_run(
                member,
                args.checkpoint,
                args.overrides,
                args.name,
                args.per_item,
                args.device,
                trust=args.trust,
                ema=not args.raw_weights,
            )
        except FrameError as error:
            if len(members) == 1:
                exit_with(str(error))
            print(f"frame: {member}: {str(error).splitlines()[0]}", file=sys.stderr)
            continue
        rows.append((run_name(member, root), result))
    if not rows:
        exit_with(f"no member of {root} could be evaluated (see above).")
    _table(rows)
    for _, result in rows:
        print(f"wrote {result['file']}" + (f" and {result['per_item']}" if args.per_item else ""))


def _table(rows) -> None:
    """One row per run; with more figures than fit across (Dice per organ, say), one row per figure."""
    from rich.console import Console
    from rich.table import Table

    first = rows[0][1]
    print(f"frame eval: scored {first['scored']}")
    table = Table(title=f"{first['items']} items, checkpoint {Path(first['checkpoint']).name}", title_justify="left")
    names = list(dict.fromkeys(k for _, result in rows for k in result["metrics"]))
    cells = {
        run: {
            **{k: f"{result['metrics'][k]:.4g}" if k in result["metrics"] else "-" for k in names},
            "epoch": str(result["epoch"]),
            "s/item": f"{result['time_per_item_s']:.3g}",
        }
        for run, result in rows
    }
    names += ["epoch", "s/item"]
    console = Console(width=max(100, Console().width))
    if sum(max(len(name), 7) + 3 for name in names) + max(len(run) for run in cells) + 4 <= console.width:
        table.add_column("run")
        for name in names:
            table.add_column(name, justify="right")
        for run, row in cells.items():
            table.add_row(run, *(row[name] for name in names))
    else:
        table.add_column("figure")
        for run in cells:
            table.add_column(run, justify="right")
        for name in names:
            table.add_row(name, *(row[name] for row in cells.values()))
    console.print(table)


def _parse(command, argv, arguments, run_dir="a run directory"):
    """Every command here takes RUN_DIR first, then its own arguments; overrides may follow flags."""
    parser = command_parser(command, [(["run_dir"], dict(metavar="RUN_DIR", help=run_dir)), *arguments])
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # an override after a flag (argparse stops collecting positionals there)
        bad = [a for a in unknown if a.startswith("-") or "=" not in a and not a.startswith("~")]  # ~key deletes
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        args.overrides = [*getattr(args, "overrides", []), *unknown]
    return args


def _existing(directory: str) -> Path:
    path = Path(directory)
    if not path.is_dir():
        exit_with(f"{directory} is not a directory; give a run directory such as outputs/<name>.")
    return path


def predict(argv: list[str]) -> None:
    """Run a trained model on files (NIfTI volumes, images) or on a dataset's items: label maps as NIfTI
    with the input's affine, or a CSV of predictions."""
    args = _parse(
        predict,
        argv,
        [
            (
                ["--input"],
                dict(
                    metavar="PATH",
                    help="a file or a folder of files; default: every item of the run's "
                    "dataset (change it with data.dataset.root=...)",
                ),
            ),
            (["--output"], dict(required=True, metavar="DIR", help="where the predictions go")),
            *_MODEL,
            (
                ["--roi-size"],
                dict(
                    metavar="D,H,W",
                    help="sliding-window inference in windows of this size "
                    "(for volumes larger than the training crops); default: "
                    "the run's predict.roi_size",
                ),
            ),
            (["--overlap"], dict(type=float, help="overlap of the windows (default: predict.overlap, 0.25)")),
            (
                ["--postprocess"],
                dict(
                    help="auto (argmax when the run's loss trains with softmax, else sigmoid), sigmoid "
                    "(multi-label: 1 + the most probable channel above --threshold, else 0), argmax "
                    "(classes) or none (raw); default: predict.postprocess, auto"
                ),
            ),
            (["--threshold"], dict(type=float, help="sigmoid threshold (default: predict.threshold, 0.5)")),
            _OVERRIDES,
        ],
    )
    from frame.trained.predict import predict_run

    roi = None
    if args.roi_size:
        try:
            roi = [int(size) for size in args.roi_size.split(",")]
        except ValueError:
            exit_with(f"--roi-size {args.roi_size}: expected sizes like 64,64,32.")
    try:
        result = predict_run(
            _existing(args.run_dir),
            args.output,
            args.input,
            args.checkpoint,
            args.overrides,
            args.device,
            roi,
            args.overlap,
            args.postprocess,
            args.threshold,
            sys.stderr.isatty(),
            trust=args.trust,
            ema=not args.raw_weights,
        )
    except FrameError as error:
        exit_with(str(error))
    per_item = result["time_s"] / max(result["items"], 1)
    print(
        f"{result['items']} items in {result['time_s']:.1f} s ({per_item:.3g} s each): "
        f"{len(result['files'])} files in {args.output}"
        + (f" (label maps: {result['postprocess']})" if result["postprocess"] else "")
    )


def export(argv: list[str]) -> None:
    """Write a run's weights as safetensors, with the resolved model config beside them."""
    args = _parse(
        export,
        argv,
        [
            (["--format"], dict(default="safetensors", help="safetensors (the only one so far)")),
            (["-o", "--output"], dict(metavar="DIR", help="where to write (default: RUN_DIR/export)")),
            _CHECKPOINT,
            _TRUST,
        ],
    )
    from frame.trained.export import export_run

    try:
        files = export_run(_existing(args.run_dir), args.output, args.checkpoint, args.format, args.trust)
    except FrameError as error:
        exit_with(str(error))
    print("\n".join(f"wrote {path}" for path in files))
