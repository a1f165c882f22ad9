"""`frame train` (and `frame run JOB` once the job is converted): Hydra's app with frame's configs,
and frame's run corridor (`frame.run.main`) as its task function."""

from frame.config.app import launch, parser
from frame.run import main as task


def train(argv: list[str], prog: str) -> None:
    """Parse Hydra's command line, register frame's Hydra plugins for a sweep, run the app."""
    hydra_parser = parser(prog)
    args = hydra_parser.parse_args(argv)
    if args.multirun:  # only a sweep needs frame's launchers and sweeper (~0.1 s to import)
        from hydra_plugins.frame_launchers import register

        register()
    launch(task, args, hydra_parser)
