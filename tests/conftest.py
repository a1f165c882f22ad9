"""Shared fixtures: the real configs, shrunk so a run takes seconds on a CPU."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One intra-op thread a process (unless the caller's environment says otherwise), set before torch is
# imported so that every command, member and SLURM job the tests start inherits it: `make test` runs two
# workers on two cores with those processes beside them, and torch's default of a thread per core in each
# oversubscribes the cores, where OpenMP's spinning threads burned about a third of the suite's CPU
# (docs/design/benchmarks.md). Tests of thread counts set their own.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Overrides that shrink the default experiment to a few seconds.
TINY = [
    "data.dataset.num_samples=6",
    "data.dataset.size=[16,16,16]",
    "model.channels=[4,8]",
    "model.strides=[2]",
    "trainer.epochs=2",
    "trainer.log_every_n_steps=1",
]


def frame_command(args) -> list[str]:
    """The real `frame` command line, as `python -m frame` of the interpreter running the tests."""
    return [sys.executable, "-m", "frame", *args]


def frame_env(env=None) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}


def run_frame(args, cwd, env=None, timeout=300, check=None, process=False, **popen):
    """Run the real `frame` command; returns CompletedProcess (text).

    In this process by default (`frame.cli.main(args)`, output and exit code captured): the imports of
    torch and MONAI are paid once per session, not once per command. `process=True`, or any `popen`
    argument (e.g. `preexec_fn` to set a resource limit in the child), runs it in a subprocess: for tests
    where the process boundary is what is under test (signals, exit of the interpreter, imports).
    """
    if process or popen or _needs_a_process(args, env):
        result = subprocess.run(
            frame_command(args), cwd=cwd, env=frame_env(env), capture_output=True, text=True, timeout=timeout, **popen
        )
    else:
        result = _in_process(args, cwd, env)
    if check is not None and result.returncode != check:
        raise AssertionError(f"exit {result.returncode} != {check}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


# read once, when a process starts: a command that sets them must start one (and any PYTHON* variable of
# the interpreter's own, e.g. PYTHONPROFILEIMPORTTIME)
_PROCESS_ENV = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES"}


def _needs_a_process(args, env) -> bool:
    """Distributed ranks (`trainer.devices=N`) and settings only a new process reads (a PYTHONPATH
    whose folders this process imports from already needs none)."""
    env = {key: value for key, value in (env or {}).items() if os.environ.get(key) != value}  # already so here
    if all(folder in sys.path for folder in env.get("PYTHONPATH", "").split(os.pathsep) if folder):
        env.pop("PYTHONPATH", None)
    env.pop("PYTHONUNBUFFERED", None)  # this process's output is captured unbuffered already
    return (
        bool(_PROCESS_ENV & set(env))
        or any(key.startswith("PYTHON") for key in env)
        or any(str(arg).startswith("trainer.devices=") and str(arg) != "trainer.devices=1" for arg in args)
    )


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


def _in_process(args, cwd, env=None) -> subprocess.CompletedProcess:
    """`frame ARGS` run by `frame.cli.main` in this process, as a fresh process would see it: the working
    directory, environment, argv, signal handlers, Hydra's singletons, logging, torch's determinism flag and
    the user's project modules are put back afterwards, so one command leaves nothing for the next."""
    import contextlib
    import logging
    import tempfile
    import traceback

    from frame.cli import main

    cwd = Path(cwd).resolve()
    saved_cwd, saved_env, saved_argv, saved_path = os.getcwd(), dict(os.environ), sys.argv, list(sys.path)
    saved_modules = set(sys.modules)
    saved_signals = {number: signal.getsignal(number) for number in _SIGNALS}
    saved_hydra = _saved_hydra()
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level, logging.root.manager.disable)
    deterministic = _torch_deterministic()
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # file descriptors: the command's children
    saved_fds = [os.dup(1), os.dup(2)]  # (JSON jobs, launchers) write there too
    code = 0
    os.chdir(cwd)
    os.environ.update({"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})})
    sys.argv = [sys.argv[0], *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main(list(args))
            except SystemExit as exit:
                if exit.code is None or isinstance(exit.code, int):
                    code = exit.code or 0
                else:  # sys.exit("message"): printed to stderr, status 1, as the interpreter does
                    print(exit.code, file=sys.stderr)
                    code = 1
            except BaseException:  # an uncaught exception: the traceback a process would print, status 1
                traceback.print_exc()
                code = 1
    finally:
        stdout.close()
        stderr.close()
        for fd, saved in zip((1, 2), saved_fds, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:] = saved_argv, saved_path
        for number, handler in saved_signals.items():
            signal.signal(number, handler)
        _restore_hydra(saved_hydra)
        for handler in root.handlers:
            if handler not in saved_logging[0]:
                handler.close()
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
        logging.disable(saved_logging[2])
        _forget_project_modules(saved_modules)
        wanted = deterministic or (False, False)
        if _torch_deterministic() not in (None, wanted):  # setting it imports torch._inductor: only if changed
            _torch_deterministic(wanted)
        if "wandb" in sys.modules:  # its settings singleton read this command's environment: the next reads anew
            sys.modules["wandb"].teardown()
    texts = []
    for file in (out, err):
        file.seek(0)
        texts.append(file.read().decode("utf-8", errors="replace"))
        file.close()
    return subprocess.CompletedProcess(frame_command(args), code, *texts)


def _saved_hydra():
    """Hydra's singletons (config store, global Hydra, OmegaConf's resolvers), copied, for `_restore_hydra`.
    As Hydra's `Singleton.get_state`/`set_state`, but the plugin registry is kept as it is rather than rebuilt:
    rebuilding re-runs every plugin module (~0.07 s a time, paid after every in-process command and composing
    test), and no test adds a plugin."""
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton

    return Singleton.get_state(), Singleton._instances.get(Plugins)  # get_state copies; it leaves Plugins out


def _restore_hydra(saved) -> None:
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton
    from omegaconf.basecontainer import BaseContainer

    state, plugins = saved
    Singleton._instances = state["instances"]
    if plugins is not None:
        Singleton._instances[Plugins] = plugins
    BaseContainer._resolvers = state["omegaconf_resolvers"]


@pytest.fixture
def hydra_state():
    """Hydra's singletons put back after the test (`_saved_hydra`)."""
    saved = _saved_hydra()
    yield
    _restore_hydra(saved)


def _forget_project_modules(before: set[str]) -> None:
    """Drop the modules a command imported from outside the installed packages and frame itself (a
    test's project, `mypkg`): the next test's project of the same name must be imported afresh. Installed
    packages stay wherever they are (also a site-packages folder a `.pth` put on sys.path): torch's
    extension modules imported a second time fail inside torch."""
    installed = tuple(path for path in sys.path if path.rstrip("/").endswith(("site-packages", "dist-packages")))
    keep = (str(REPO / "frame"), str(REPO / "hydra_plugins"), sys.prefix, sys.base_prefix, *installed)
    new = {name: _location(sys.modules[name]) for name in set(sys.modules) - before}  # all read before any goes
    for name, where in new.items():
        if where and not where.startswith(keep):
            del sys.modules[name]


def _location(module) -> str | None:
    spec = getattr(module, "__spec__", None)
    if getattr(spec, "origin", None) not in (None, "namespace"):
        return str(spec.origin)
    locations = getattr(spec, "submodule_search_locations", None)
    try:
        return next(iter(locations or []), None)
    except KeyError:  # a namespace package whose parent is gone already
        return None


def _torch_deterministic(value=None):
    """torch's determinism flag (`trainer.deterministic` sets it for the process); None without torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if value is None:
        return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(value[0], warn_only=value[1])
    return value


def start_frame(args, cwd, env=None, **popen) -> subprocess.Popen:
    """Start the real `frame` command in the background (output merged into one text pipe unless
    `popen` redirects it): for tests that signal, watch or race a running process."""
    popen = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
        "preexec_fn": _default_sigint,
        **popen,
    }
    return subprocess.Popen(frame_command(args), cwd=cwd, env=frame_env(env), **popen)


def _default_sigint() -> None:
    """A test sends the child SIGINT as a terminal would: when the suite itself runs as a background
    job (`make test &`), SIGINT is ignored and that would be inherited, so Python would never raise
    KeyboardInterrupt in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def metrics(run_dir) -> list[dict]:
    """Every record of a run's metrics.jsonl. Strict, unlike frame's own reader: a line that is not
    a JSON object fails the test, since a test run must never leave one."""
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r, dict) for r in records), records
    return records


@pytest.fixture
def compose(hydra_state):
    """Compose `train.yaml` with overrides through Hydra's compose API (no run directory).

    Hydra's singletons (its version base, config store) are put back afterwards (`hydra_state`):
    `version_base=None` here would otherwise change `hydra.job.chdir` for every later test in the
    session (Hydra's launcher suites).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from frame.config.schema import register_configs
    from frame.config.speedups import faster_composition

    register_configs()
    faster_composition()  # as every frame command composes (else it would depend on what ran before in the worker)

    def _compose(overrides=(), return_hydra_config=False):
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="frame.conf", version_base=None):
            return hydra_compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


def require_slurm(nodes: int = 1) -> None:
    """Skip (or fail with FRAME_REQUIRE_SLURM=1, as in CI) unless `nodes` local SLURM nodes take jobs
    (`scripts/slurm-local up --nodes N`)."""
    import re
    import shutil

    problem = None
    if shutil.which("sinfo") is None:
        problem = "SLURM is not installed (scripts/slurm-local up)"
    else:
        states = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
        if states.returncode != 0 or len(re.findall(r"idle|mixed|allocated", states.stdout)) < nodes:
            up = "scripts/slurm-local up" + (f" --nodes {nodes}" if nodes > 1 else "")
            problem = f"fewer than {nodes} SLURM nodes take jobs ({up}): {states.stdout or states.stderr}"
    if problem:
        if os.environ.get("FRAME_REQUIRE_SLURM") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: `-n 2 --dist loadgroup`) a file's tests stay in one worker, sharing its
    module and session fixtures (one trained run, not one per worker), and the SLURM tests all share one, so
    their jobs never queue on the local cluster behind each other's."""
    if config.pluginmanager.hasplugin("xdist"):  # a worker sees dist="no"; the groups count under loadgroup only
        for item in items:
            cluster = item.get_closest_marker("slurm") or item.get_closest_marker("multinode")
            item.add_marker(pytest.mark.xdist_group("slurm" if cluster else item.nodeid.split("::")[0]))


def pytest_terminal_summary(terminalreporter):
    """One line saying how to run the tests that skipped for want of the local SLURM cluster (`make test`
    on a laptop skips them all; CI sets FRAME_REQUIRE_SLURM=1, where they fail instead)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "SLURM" in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} skipped for want of the local SLURM cluster: start it with "
            "`scripts/slurm-local up` (`--nodes 2` for the multi-node ones), then run `make test` again.",
            yellow=True,
        )
