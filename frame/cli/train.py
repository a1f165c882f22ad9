"""`frame train` (and `frame run JOB` once the job is converted): Hydra's app with frame's configs,
and frame's run corridor (`frame.launch.corridor.task`) as its task function."""

import sys

from frame.config.app import flags_first, launch, parser
from frame.core.errors import exit_with
from frame.core.ranks import global_rank

# torchrun's other ranks: rank 0 alone writes .hydra/ and train.log (they log to the console)
NO_SIDE_EFFECTS = [
    "hydra.output_subdir=null",
    "~hydra.job_logging.handlers.file",
    "hydra.job_logging.root.handlers=[console]",
]


def train(argv: list[str], prog: str) -> None:
    """Parse Hydra's command line, run the app (Hydra's plugin scan finds frame's launchers and sweeper)."""
    hydra_parser = parser(prog)
    flags, overrides = flags_first(argv)
    args = hydra_parser.parse_args([*flags, *overrides])
    modes = [
        flag
        for flag, given in (
            ("--run", args.run),
            ("-m", args.multirun),
            ("--cfg", args.cfg is not None),
            ("--info", args.info is not None),
            ("-sc", args.shell_completion),
        )
        if given
    ]
    if len(modes) > 1:  # Hydra raises a ValueError (a traceback) for it
        exit_with(f"{' and '.join(modes)} do not go together: pick one of --run, -m, --cfg, --info, -sc.")
    if args.shell_completion and sys.stdout.isatty() and (hint := _completion_hint(args.overrides)):
        print(hint)  # typed at a prompt, the script would only be printed: say how to load it
        return
    if not args.multirun and global_rank() != 0:
        args.overrides += NO_SIDE_EFFECTS
    launch(task, args, hydra_parser)


def _completion_hint(overrides: list[str]) -> str | None:
    """How to turn on completion for `-sc install=SHELL`, or None for Hydra's other -sc queries."""
    shell = next((o.split("=", 1)[1] for o in overrides if o.startswith("install=")), None)
    if shell is None:
        return None
    load = f"frame -sc install={shell} | source" if shell == "fish" else f'eval "$(frame -sc install={shell})"'
    return (
        f"-sc install={shell} prints a script for your shell to read. Turn completion on with\n  {load}\n"
        f"(add that line to your shell's startup file to keep it)."
    )


def task(cfg):
    """Hydra's task function: frame's run corridor, imported only when a job runs (not for --cfg, --help)."""
    from frame.launch.corridor import task as corridor

    return corridor(cfg)
