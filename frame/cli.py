"""The `frame` command: parse the subcommand and hand over; nothing heavy is imported here."""

import sys

USAGE = """\
usage: frame <command> [args]

commands:
  train [overrides...]          train with Hydra configs (conf/train.yaml); any Hydra flag works:
                                --help, --cfg job, --info, -m (sweep), --config-dir DIR, hydra/launcher=...
  --version                     print frame's version

examples:
  frame train                                   the default experiment (synthetic 3D organs, MONAI UNet)
  frame train optimizer.lr=3e-4 trainer.epochs=5
  frame train experiment=classify
  frame train -m optimizer.lr=1e-3,1e-4         a sweep: one run per value under outputs/<name>/
  frame train --cfg job                         print the composed config and exit
"""


def _train(argv: list[str]) -> None:
    from frame.config.app import launch
    from frame.train import main as task

    launch(task, argv)


COMMANDS = {"train": _train}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return
    if argv[0] == "--version":
        import frame

        print(f"frame {frame.__version__}")
        return
    if argv[0].startswith("-sc") or argv[0].startswith("--shell-completion"):
        argv = ["train", *argv]  # Hydra's completion script calls the program without a subcommand
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        from frame.errors import did_you_mean, exit_with

        exit_with(f"unknown command '{command}'.{did_you_mean(command, COMMANDS)} Commands: {', '.join(COMMANDS)}.")
    COMMANDS[command](rest)
