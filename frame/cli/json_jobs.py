"""The JSON-job commands: `frame run`, `frame check`, `frame convert`, `frame which`.

Only argument parsing and printing live here; the work is in `frame.launch.json_jobs` (running jobs)
and `frame.config` (converting, checking, resolving names).
"""

import argparse
import sys
import time
from pathlib import Path

from frame.cli.train import train
from frame.config.json_job import is_job_file
from frame.config.project import display
from frame.core.atomic import Outputs, make_folder, write_file
from frame.core.errors import FrameError, did_you_mean, exit_with

RUN_USAGE = """\
usage: frame run JOB.json [JOB.json ...] [overrides...] [-m] [--parallel N] [--project DIR]

Run seed JSON jobs (comments allowed), one after another. Overrides use the Hydra keys after
conversion (`frame convert JOB.json` shows them) and apply to every job; -m sweeps as in frame train.
  --parallel N    run up to N jobs at once, each in its own process
  --project DIR   the project root (default: the folder that holds the job's config/, else the cwd)
"""


def split_args(argv: list[str], usage: str) -> tuple[list[Path], list[str], str | None, int]:
    """(job files, the rest for Hydra, --project, --parallel) from a command line."""
    jobs, rest, project, parallel = [], [], None, 1
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help") and not jobs:
            print(usage, end="")
            sys.exit(0)
        if arg in ("--project", "--parallel", "-j") or arg.startswith(("--project=", "--parallel=")):
            name, _, value = arg.partition("=")
            value = value or next(args, None)
            if value is None:
                exit_with(f"{name} needs a value.\n{usage}")
            if name == "--project":
                project = value
            elif not value.isdigit() or int(value) < 1:
                exit_with(f"{name} {value}: expected a number of jobs >= 1.")
            else:
                parallel = int(value)
        elif is_job_file(arg):
            jobs.append(Path(arg))
        else:
            rest.append(arg)
    return jobs, rest, project, parallel


def run(argv: list[str]) -> None:
    from frame.launch.json_jobs import Runner, prepare_job

    jobs, rest, project, parallel = split_args(argv, RUN_USAGE)
    if not jobs:
        exit_with(f"no job file given (a .json file).\n{RUN_USAGE}")
    if len(jobs) == 1 and parallel == 1:
        train(prepare_job(jobs[0], rest, project), "frame run")
    else:
        Runner(jobs, rest, parallel, project).run()


CHECK_USAGE = """\
usage: frame check [JOB.json ...] [overrides...] [--project DIR] [--config-dir DIR]

Check a job without training it: every name resolves, every param binds to its constructor, the
data root exists, the dataset can provide the labels. Without a JSON job, checks what
`frame train [overrides]` would run. Exit 0 when all is well, 2 otherwise.
"""


def check(argv: list[str]) -> None:
    from frame.config import json_job
    from frame.config.app import hydra_args
    from frame.config.check import check_job

    start = time.perf_counter()
    jobs, rest, project, _ = split_args(argv, CHECK_USAGE)
    overrides, config_dir = hydra_args(rest)
    problems = []
    for path in jobs or [None]:
        try:
            job = json_job.convert(path, project) if path is not None else None
            cfg, checked = check_job(job, overrides, config_dir)
        except FrameError as error:
            problems.append(str(error))
            continue
        title = f"{path} (project {job.project})" if job is not None else "frame train " + " ".join(overrides)
        print(title)
        for item in checked:
            print(f"  {item.key:<32} {item.target:<48} {item.note or display(item.where)}")
        root = cfg.data.dataset.get("root")
        if isinstance(root, str):
            print(f"  {'data.dataset.root':<32} {root} (exists)")
    if problems:
        exit_with("\n".join(problems))
    print(f"ok ({time.perf_counter() - start:.2f} s)")


def convert(argv: list[str]) -> None:
    """`frame convert JOB.json [-o FILE.yaml] [--project DIR]`."""
    from frame.config import json_job

    parser = argparse.ArgumentParser(
        prog="frame convert",
        description=("Write the Hydra experiment equivalent to a seed JSON job (to stdout without -o)."),
    )
    parser.add_argument("job", help="the JSON job file")
    parser.add_argument("-o", "--output", help="where to write, e.g. conf/experiment/job_01.yaml")
    parser.add_argument("--project", help="the project root (default: the folder holding the job's config/)")
    args = parser.parse_args(argv)
    try:
        job = json_job.convert(args.job, args.project)
    except FrameError as error:
        exit_with(str(error))
    if args.output is None:
        sys.stdout.write(job.to_yaml())
    else:
        output = Path(args.output)
        try:
            Outputs([args.job]).add(output, args.job)  # `-o JOB` would replace the job it reads
            make_folder(output.parent)
            write_file(output, job.to_yaml(_train_command(output)))
        except FrameError as error:
            exit_with(str(error))
        print(f"wrote {output}; run it with: {_train_command(output)}", file=sys.stderr)
    if "WANDB_API_KEY" in job.env:
        print("frame convert: wandb_api_key was left out; export WANDB_API_KEY before `frame train`.", file=sys.stderr)


def _train_command(output: Path) -> str:
    """How to run an experiment written to `output` (frame's own conf/ needs no --config-dir)."""
    from importlib.resources import files

    experiment = output.resolve().parent
    config_dir = experiment.parent
    if experiment.name != "experiment":
        return f"move it into <config dir>/experiment/, then: frame train --config-dir <config dir> experiment={output.stem}"
    if config_dir == Path(str(files("frame.conf"))).resolve():
        return f"frame train experiment={output.stem}"
    return f"frame train --config-dir {display(config_dir)} experiment={output.stem}"


def which(argv: list[str]) -> None:
    """`frame which NAME [--kind KIND] [--project DIR]`: where a name resolves, and what else it matched."""
    from frame.config import source
    from frame.config.project import find_root
    from frame.config.resolver import KINDS, TIER_ORDER, Resolver, optional_module, tier_label

    parser = argparse.ArgumentParser(prog="frame which", description=which.__doc__.split(": ", 1)[1])
    parser.add_argument("name", help="a bare name (UNet, Adam, CropAroundBrainStem) or a dotted path")
    parser.add_argument("--kind", choices=KINDS, help="only this kind of component (default: every kind)")
    parser.add_argument("--project", help="the project root (default: the current directory)")
    args = parser.parse_args(argv)
    try:
        resolver = Resolver(find_root(None, args.project))
    except FrameError as error:
        exit_with(str(error))
    if "." in args.name:
        found = source.locate(args.name)
        if found is None and optional_module(args.name.rsplit(".", 1)[0]) is None:
            exit_with(f"{args.name}: no such module or class.")
        print(f"{args.name}  (a dotted path, used as is)  {found.where if found else 'importable'}")
        return
    kinds = [args.kind] if args.kind else list(KINDS)
    shown = False
    for kind in kinds:
        matches = resolver.matches(args.name, kind)
        if not matches:
            continue
        shown = True
        print(f"{args.name} ({kind})")
        winners = [m for m in matches if m.tier == matches[0].tier]
        for match in matches:
            mark = "->" if match in winners else "  "
            print(f"  {mark} {match.target:<52} {match.tier:<12} {match.where}")
        if len(winners) > 1:
            print(
                f"     ambiguous: {len(winners)} definitions in {tier_label(winners[0].tier)}; "
                f"a job must name one by its dotted path"
            )
    if not shown:
        candidates = set().union(*(resolver.candidates(k) for k in kinds))
        exit_with(
            f"'{args.name}' is not a {' or '.join(kinds) if args.kind else 'component'} in any tier "
            f"({', '.join(TIER_ORDER)}).{did_you_mean(args.name, candidates)}"
        )
