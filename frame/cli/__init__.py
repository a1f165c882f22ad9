"""The `frame` command: parse the subcommand and hand over; nothing heavy is imported here.

Every command line is parsed in this package: the subcommands on runs (`runs`, `plot`, `sync`)
and `train` (in `cli.train`), the JSON-job commands (`run`, `check`, `convert`, `which`) in `cli.json_jobs`, and the commands on a trained run (`eval`, `predict`, `export`) in `cli.trained`.
"""

import importlib
import os
import sys

from frame.cli.arguments import command_parser, flag, folder

USAGE = """\
usage: frame <command> [args]

commands:
  train [overrides...]          train with Hydra configs (conf/train.yaml); any Hydra flag works:
                                --help, --cfg job, --info, -m (sweep), --config-dir DIR, hydra/launcher=...
  runs [DIR] [--json]           table of the runs under DIR (default outputs/): status, epoch, best, W&B id
  plot RUN_DIR... [-o FILE.png] training/validation curves, runs overlaid; a sweep dir adds metric vs parameter
  sync [DIR] [--dry-run]        upload the offline W&B runs under DIR (default outputs/), attempt by attempt
  run JOB.json [...] [overrides] run seed JSON jobs one after another (--parallel N: N at once); -m sweeps
  convert JOB.json [-o FILE]    write the equivalent Hydra experiment (YAML, explicit _target_s)
  check [JOB.json] [overrides]  check names, params, data root and labels without training (exit 0 or 2)
  which NAME [--kind KIND]      where a bare name resolves (project, frame, torchvision, MONAI, torch)
  eval RUN_DIR [overrides]      score best.pt on a data set (--per-item: a CSV per item); a sweep dir: each member
  predict RUN_DIR --input PATH --output DIR   predictions on files or a dataset: NIfTI label maps, or a CSV
  export RUN_DIR                best weights as safetensors with the model's config beside them
  --version                     print frame's version

examples:
  frame train                                   the default experiment (synthetic 3D organs, MONAI UNet)
  frame train optimizer.lr=3e-4 trainer.epochs=5
  frame train experiment=classify
  frame train -m optimizer.lr=1e-3,1e-4         a sweep: one run per value under outputs/<name>-sweep/
  frame train --cfg job                         print the composed config and exit
  frame run config/job_01.json trainer.epochs=5 a seed JSON job (from a project with src/ and config/)
  frame runs                                    what ran, what runs, what failed
  frame plot outputs/organs -o organs.png
"""


def _train(argv: list[str]) -> None:
    from frame.cli.train import train

    train(argv, "frame train")


def _runs(argv: list[str]) -> None:
    """Table of the runs under DIR."""
    args = command_parser(
        _runs,
        [folder("a run, a sweep or a folder of runs"), flag("--json", "print JSON (one object per run) for scripts")],
    ).parse_args(argv)
    from frame.trained.runs import runs_table

    sys.exit(runs_table(_existing(args.dir), as_json=args.json))


def _plot(argv: list[str]) -> None:
    """Training and validation curves of one or more runs (PNG)."""
    args = command_parser(
        _plot,
        [
            (["run_dirs"], dict(nargs="+", metavar="RUN_DIR", help="run directories or sweep directories")),
            (["-o", "--output"], dict(metavar="FILE.png", help="where to write (default: RUN_DIR/plot.png)")),
        ],
    ).parse_args(argv)
    from frame.core.errors import FrameError, exit_with
    from frame.trained.plots import plot

    try:
        print(plot([_existing(d) for d in args.run_dirs], args.output))
    except FrameError as error:
        exit_with(str(error))


def _sync(argv: list[str]) -> None:
    """Upload offline W&B runs (needs WANDB_API_KEY or `wandb login`)."""
    timeout = dict(
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="stop the upload after this long (default 3600); the rest stays offline",
    )
    args = command_parser(
        _sync,
        [
            folder("where to look for offline runs"),
            flag("--dry-run", "list what would be uploaded"),
            (["--timeout"], timeout),
        ],
    ).parse_args(argv)
    from frame.core.errors import FrameError, exit_with
    from frame.tracking.offline import sync

    try:
        sys.exit(sync(_existing(args.dir), dry_run=args.dry_run, timeout_s=args.timeout))
    except FrameError as error:
        exit_with(str(error))


def _existing(directory: str):
    from pathlib import Path

    from frame.core.errors import exit_with

    path = Path(directory)
    if not path.is_dir():
        exit_with(f"{directory} is not a directory.")
    return path


def _lazy(module: str, command: str):
    """The command's function, imported only when that command runs (`frame --help` stays light)."""

    def run(argv: list[str]) -> None:
        getattr(importlib.import_module(f"frame.cli.{module}"), command)(argv)

    return run


COMMANDS = {
    "train": _train,
    "run": _lazy("json_jobs", "run"),
    "convert": _lazy("json_jobs", "convert"),
    "check": _lazy("json_jobs", "check"),
    "which": _lazy("json_jobs", "which"),
    "runs": _runs,
    "plot": _plot,
    "sync": _sync,
    "eval": _lazy("trained", "eval"),
    "predict": _lazy("trained", "predict"),
    "export": _lazy("trained", "export"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return
    if argv[0] == "--version":
        from frame.core.version import __version__

        print(f"frame {__version__}")
        return
    if argv[0].startswith("-sc") or argv[0].startswith("--shell-completion"):
        argv = ["train", *argv]  # Hydra's completion script calls the program without a subcommand
        import re

        # ...and passes the line typed so far, where Hydra would read `train` as an override
        os.environ["COMP_LINE"] = re.sub(r"^(\s*\S+)\s+train(\s|$)", r"\1\2", os.environ.get("COMP_LINE", ""))
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        from frame.core.errors import did_you_mean, exit_with

        exit_with(f"unknown command '{command}'.{did_you_mean(command, COMMANDS)} Commands: {', '.join(COMMANDS)}.")
    if os.getcwd() not in sys.path and "" not in sys.path:  # the user's own packages, as with `python -m frame`:
        sys.path.insert(0, os.getcwd())  # for train, and for eval/predict/export rebuilding what it trained
    try:
        COMMANDS[command](rest)
    except KeyboardInterrupt:  # Ctrl-C outside a run's stop flag (composing, tearing down): no traceback
        from frame.core.exits import EXIT_ABORTED

        sys.stderr.write("\nframe: interrupted\n")
        sys.exit(EXIT_ABORTED)
