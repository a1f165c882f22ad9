"""Running a Hydra app from frame's command line.

`launch` is `@hydra.main` without the decorator: it takes argv explicitly (so
`frame train ...` and `frame run job.json ...` share it) and turns user
mistakes into a one-paragraph message and exit code 2. Hydra prints its own
composition errors compactly but exits 1, and would print a traceback for our
FrameError; we route both through `_report_user_errors`.
"""

import os

from frame.config.schema import register_configs, register_sweep_plugins
from frame.errors import FrameError, exit_with

CONFIG_MODULE = "pkg://frame.conf"


def launch(task_function, argv: list[str], config_name: str = "train", prog: str = "frame train") -> None:
    import hydra._internal.utils as hydra_utils

    register_configs()
    parser = hydra_utils.get_args_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    if args.multirun:
        register_sweep_plugins()
    original = hydra_utils.run_and_report
    hydra_utils.run_and_report = lambda func: original(lambda: _report_user_errors(func))
    try:
        hydra_utils._run_hydra(
            args=args,
            args_parser=parser,
            task_function=task_function,
            config_path=CONFIG_MODULE,
            config_name=config_name,
        )
    finally:
        hydra_utils.run_and_report = original


def _report_user_errors(func):
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return func()
    except (FrameError, CompactHydraException) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = str(error).strip()
        cause = error.__cause__
        if isinstance(cause, (OmegaConfBaseException, FrameError)) and str(cause).strip() not in message:
            message += "\n" + str(cause).strip()
        exit_with(message)
