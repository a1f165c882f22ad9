"""The argument tables of the commands on runs (`runs`, `plot`, `sync`, `eval`, `predict`, `export`): a
command's description is its function's docstring, its arguments a list of (names, options) pairs."""

import argparse


def command_parser(command, arguments) -> argparse.ArgumentParser:
    """`frame NAME`'s parser, NAME and description read from the command's function (`_runs`: `frame runs`)."""
    parser = argparse.ArgumentParser(prog=f"frame {command.__name__.lstrip('_')}", description=command.__doc__)
    for names, options in arguments:
        parser.add_argument(*names, **options)
    return parser


def flag(name: str, help: str) -> tuple:
    """An on/off option."""
    return [name], dict(action="store_true", help=help)


def folder(help: str) -> tuple:
    """The optional DIR of the commands that look through runs, outputs/ unless given."""
    return ["dir"], dict(nargs="?", default="outputs", help=f"{help} (default: outputs)")
