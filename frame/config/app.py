"""Running a Hydra app from frame's command line.

`launch` is `@hydra.main` without the decorator: it takes Hydra's parsed command
line explicitly (so `frame train ...` and `frame run job.json ...` share it) and
turns user mistakes into a one-paragraph message and exit code 2. Hydra prints
its own composition errors compactly but exits 1, and would print a traceback
for our FrameError; we route both through `_report_user_errors`.
"""

import os
import re

from frame.compat.hydra import internal_utils as hydra_utils
from frame.config.schema import register_configs
from frame.config.speedups import faster_composition
from frame.core.errors import FrameError, did_you_mean, exit_with

CONFIG_MODULE = "pkg://frame.conf"


def parser(prog: str):
    """Hydra's own command-line parser (overrides, -m, --cfg, --config-dir, ...), named `prog`."""
    parser = hydra_utils.get_args_parser()
    parser.prog = prog
    return parser


def flags_first(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags with their values, overrides): Hydra's parser wants every override after its flags
    (`frame train seed=1 -m` as any Hydra app takes it). `-sc install=bash` is a flag and its value.
    `local=other` is `local@_global_=other`, the name Hydra knows the group by (train.yaml)."""
    flags, overrides = [], []
    for i, arg in enumerate(argv):
        is_value = i > 0 and argv[i - 1] in ("-sc", "--shell-completion")
        is_override = not arg.startswith("-") and ("=" in arg or arg.startswith("~"))
        if is_override and not is_value:
            overrides.append(re.sub(r"^(\+\+|\+|~)?local=", r"\1local@_global_=", arg))
        else:
            flags.append(arg)
    return flags, overrides


def hydra_args(argv: list[str]) -> tuple[list[str], str | None]:
    """The overrides and --config-dir among Hydra's flags (-m, --cfg job, ...)."""
    flags, overrides = flags_first(argv)
    args = hydra_utils.get_args_parser().parse_args([*flags, *overrides])
    return args.overrides, args.config_dir


def launch(task_function, args, args_parser, config_name: str = "train") -> None:
    """Run `task_function` as Hydra's app with frame's configs, from `args_parser`'s parse of the command line."""
    register_configs()
    faster_composition()
    original, search_path = hydra_utils.run_and_report, hydra_utils.create_automatic_config_search_path
    hydra_utils.run_and_report = lambda func: original(lambda: _report_user_errors(func, args.overrides))
    if args.config_dir is not None:
        hydra_utils.create_automatic_config_search_path = lambda *where: _user_first(search_path(*where), args)
    try:
        hydra_utils._run_hydra(
            args=args,
            args_parser=args_parser,
            task_function=task_function,
            config_path=CONFIG_MODULE,
            config_name=config_name,
        )
    finally:
        hydra_utils.run_and_report, hydra_utils.create_automatic_config_search_path = original, search_path


def _user_first(search_path, args):
    """`--config-dir` before frame's configs (Hydra puts it after): a `train.yaml` there is the primary
    config, and an option there shadows frame's of the same name, as `frame check` composes them."""
    from hydra.core.config_search_path import SearchPathQuery

    directory = os.path.abspath(args.config_dir)
    if os.path.isdir(directory):  # else Hydra's own message
        search_path.prepend("command-line", f"file://{directory}", anchor=SearchPathQuery(provider="main"))
        args.config_dir = None  # added once
    return search_path


def _report_user_errors(func, overrides):
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import CompactHydraException
    from yaml import YAMLError  # a config file that is not YAML: its message names the file, line and column

    try:
        return func()
    except (FrameError, CompactHydraException, YAMLError) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        exit_with(composition_message(error))
    except ValueError as error:
        hydra = GlobalHydra.instance()
        message = group_value_message(error, overrides, hydra.config_loader()) if hydra.is_initialized() else None
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        exit_with(message)


def group_value_message(error: ValueError, overrides, loader) -> str | None:
    """`lr_scheduler=null`, `model=3`: a config group given a value that names none of its options, which
    Hydra refuses with a bare ValueError (a traceback naming neither the override nor the way out).
    None for any other ValueError."""
    if not str(error).startswith("Config group override must be a string or a list"):
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_delete() or (override.is_sweep_override() and not override.is_discrete_sweep()):
            continue
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        bad = [value for value in values if not isinstance(value, (str, list, dict))]
        group = override.key_or_group
        if not bad or not loader.repository.group_exists(group):
            continue
        value = bad[0]
        options = loader.get_group_options(group)
        if value is None and override.is_sweep_override():
            hint = f" A sweep cannot leave a group out: run without {group} on its own (~{group})."
        elif value is None:
            hint = f" To run without {group}, write ~{group}; to give it inline, ~{group} '+{group}={{_target_: ...}}'."
        elif str(value) in options:
            hint = f" A name that reads as a number is quoted: {group}='{value}'."
        else:
            hint = ""
        return (
            f"{override.input_line}: {group} is a config group; it takes the name of one of its options "
            f"({', '.join(options)}) or a list of names.{hint}"
        )
    return str(error)


def composition_message(error: Exception) -> str:
    """Hydra's message and its cause's, plus what to do where Hydra's says only what clashed."""
    from omegaconf.errors import OmegaConfBaseException

    message = str(error).strip()
    cause = error.__cause__
    if misspelt := _misspelt_key(message, cause):
        return misspelt
    message = message.split("\nConfig search path:")[0]  # after the options Hydra lists: its internals
    if isinstance(cause, (OmegaConfBaseException, FrameError)) and str(cause).strip() not in message:
        message += "\n" + str(cause).strip()
    if "Cannot merge DictConfig with ListConfig" in message and re.search(r"full_key: *$", message, re.MULTILINE):
        message += (
            "\nA config group (`logger`, `evaluators`, `model`, ...) is picked in a defaults list "
            "(`- override /logger: [jsonl]`) or on the command line (`logger=[jsonl]`), not set as a "
            "list in a file's body."
        )
    return message


def _misspelt_key(message: str, cause) -> str | None:
    """A did-you-mean for `trainer.epoch=3`, where Hydra advises `+trainer.epoch=3` (which a typed node refuses
    too, and which would add a key nothing reads to a component); None for other errors."""
    from omegaconf import DictConfig
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if not (
        isinstance(cause, (ConfigAttributeError, ConfigKeyError))
        and "To append to your config use +" in message
        and isinstance(cause.parent_node, DictConfig)
        and cause.full_key
    ):
        return None
    key, parent = str(cause.full_key), cause.parent_node
    node = key.rpartition(".")[0] or "the config"
    keys = [str(k) for k in parent.keys() if k != "hydra"]
    typed = cause.object_type is not None and cause.object_type.__module__ == "frame.config.schema"
    add = (
        ""
        if typed
        else (
            f" To add a key {node} lacks (a constructor argument of a component), "
            f"write +{message.split('use +', 1)[1].strip()}."
        )
    )
    return (
        f"{key} is not a key of {node}.{did_you_mean(str(cause.key), keys)} "
        f"{node.capitalize() if node == 'the config' else node} has: {', '.join(keys)}.{add}"
    )
