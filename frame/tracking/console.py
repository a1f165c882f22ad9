"""The terminal side of a run: config tree, progress, and a summary at the end.

On a TTY a rich progress bar per epoch shows loss, learning rate and samples/s
(log lines print above it). Without a TTY (SLURM logs, pipes) the same facts
go out as a plain log line at most every `interval_s` seconds, so a log file
stays readable. The end summary fits one screen: outcome, best metric, where
the checkpoints are, how to continue, how to upload offline W&B runs.
"""

import logging
import shlex
import sys
import time
from pathlib import Path

from frame.tracking.base import MetricLogger
from frame.tracking.jsonl import best, better, read_metrics

log = logging.getLogger("frame")


class ConsoleLogger(MetricLogger):
    """Progress and summaries on stdout.

    Args:
        interval_s: plain mode: at most one progress line per this many seconds.
        show_config: print the resolved config as a tree at start.
        progress: auto (a bar on a TTY, plain lines otherwise) | bar | plain | off.

    Raises:
        ValueError: an unknown `progress` value.
    """

    def __init__(self, interval_s: float = 30.0, show_config: bool = True, progress: str = "auto"):
        if progress not in ("auto", "bar", "plain", "off"):
            raise ValueError(f"progress={progress!r}: expected auto, bar, plain or off")
        self.interval_s, self.show_config, self.progress_mode = interval_s, show_config, progress
        self.console = None
        self._progress = None
        self._task = None
        self._streams = []  # logging handlers re-pointed at the live display: (handler, original stream)

    def start(self, run_dir, config, resume_step):
        from rich.console import Console

        self.run_dir = Path(run_dir)
        self.console = Console(file=sys.stdout, highlight=False)
        trainer = config.get("trainer") or {}
        self.epochs = trainer.get("epochs")
        self.monitor, self.maximize = trainer.get("monitor"), trainer.get("monitor_mode") == "max"
        self.best, self.best_epoch = None, None
        self.step = self.epoch_base = resume_step or 0
        self.started, self.last_line = time.monotonic(), 0.0
        if self.show_config:
            self.console.print(config_tree(config, title=f"[bold]{config.get('name', 'run')}[/] -> {self.run_dir}"))
        if self.progress_mode == "bar" or (self.progress_mode == "auto" and self.console.is_terminal):
            self._start_bar()

    def epoch_start(self, epoch, batches):
        self.epoch, self.batches, self.epoch_base = epoch, batches, self.step
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(
                f"epoch {epoch + 1}/{self.epochs}", total=batches, loss=float("nan"), lr=float("nan"), rate=0.0
            )

    def log_metrics(self, metrics, step, epoch):
        self.step = step
        if self.monitor in metrics:
            value = metrics[self.monitor]
            if better(value, self.best, self.maximize):
                self.best, self.best_epoch = value, epoch
        if "train/loss" not in metrics:
            return
        done = step - self.epoch_base
        loss, lr, rate = (
            metrics["train/loss"],
            metrics.get("train/lr", float("nan")),
            metrics.get("train/samples_per_s", 0.0),
        )
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, loss=loss, lr=lr, rate=rate)
        elif self.progress_mode != "off" and time.monotonic() - self.last_line >= self.interval_s:
            self.last_line = time.monotonic()
            log.info(
                "epoch %d/%s  batch %d/%d  step %d  loss %.4g  lr %.3g  %.1f samples/s",
                epoch + 1,
                self.epochs,
                done,
                self.batches,
                step,
                loss,
                lr,
                rate,
            )

    def finish(self, status):
        self._stop_bar()
        if self.console is None:
            return
        self.console.print(self.summary(status))

    # ---- pieces -------------------------------------------------------------------------------

    def summary(self, status: str):
        from rich.panel import Panel
        from rich.table import Table

        colour = {"complete": "green", "interrupted": "yellow"}.get(status, "red")
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("status", f"[{colour}]{status}[/]  after {format_duration(time.monotonic() - self.started)}")
        value, epoch = best(read_metrics(self.run_dir), self.monitor, self.maximize)  # all attempts, when jsonl is on
        if value is None:
            value, epoch = self.best, self.best_epoch
        if value is not None:
            table.add_row("best", f"{self.monitor} = {value:.4g} (epoch {epoch})")
        table.add_row("run", str(self.run_dir))
        checkpoints = self.run_dir / "checkpoints"
        if checkpoints.is_dir():
            names = sorted(p.name for p in checkpoints.glob("*.pt"))
            table.add_row("checkpoints", f"{checkpoints}/ ({', '.join(names)})")
        table.add_row("look", f"frame plot {self.run_dir}")
        if status != "complete":
            table.add_row("continue", f"{_command()}   (resume=true is the default)")
        offline = list((self.run_dir / "wandb").glob("offline-run-*"))
        if offline:
            table.add_row("W&B", f"offline; upload with: frame sync {self.run_dir}")
        return Panel(table, title="frame", expand=False)

    def _start_bar(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4g}  lr {task.fields[lr]:.3g}  {task.fields[rate]:.1f} samples/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            refresh_per_second=4,  # rich's default 10 Hz redraw costs CPU the training threads could use
        )
        self._progress.start()
        # Log handlers hold the real stdout/stderr; point them at the live display so lines print above the bar.
        for handler in _stream_handlers():
            if handler.stream in (sys.__stdout__, sys.__stderr__):
                self._streams.append((handler, handler.stream))
                handler.setStream(sys.stdout if handler.stream is sys.__stdout__ else sys.stderr)

    def _stop_bar(self):
        if self._progress is None:
            return
        self._progress.stop()
        self._progress = self._task = None
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams.clear()


def config_tree(config, title: str = "config"):
    """A rich Tree of a nested dict/list config."""
    from rich.markup import escape
    from rich.tree import Tree

    def add(node, value):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(child, (dict, list)) and child:
                add(node.add(f"[bold]{escape(str(key))}[/]"), child)
            else:
                child = getattr(child, "value", child)  # enums (precision, monitor_mode) by their value
                node.add(
                    f"[bold]{escape(str(key))}[/]: {escape(repr(child) if isinstance(child, str) else str(child))}"
                )

    tree = Tree(title)
    add(tree, config)
    return tree


def _stream_handlers():
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if type(handler) is logging.StreamHandler:
                yield handler


def _command() -> str:
    """The command that continues this run: the same command again (a sweep member: the sweep's command)."""
    if sys.argv[1:2] == ["run"]:  # a JSON job: the same `frame run JOB.json` again
        return shlex.join(["frame", *_continuing(sys.argv[1:])])
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized():
            hydra = HydraConfig.get()
            if hydra.mode == RunMode.MULTIRUN:
                return "the sweep's command again (frame train -m ...; finished members return at once)"
            return shlex.join(["frame", "train", *_continuing(hydra.overrides.task)])
    except Exception:  # not under Hydra (an in-process test): fall back to argv
        pass
    return shlex.join(["frame", *_continuing(sys.argv[1:])])


def _continuing(args) -> list[str]:
    """The arguments without `fresh=` and `resume=`: run again with them, fresh=true would move this run
    aside and start over, and resume=false would be refused."""
    return [a for a in args if a.lstrip("+").split("=", 1)[0] not in ("fresh", "resume")]


def format_duration(seconds: float) -> str:
    """1h02m03s, or 2m03s under an hour."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
