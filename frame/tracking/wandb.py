"""Weights & Biases, made safe for compute nodes without internet.

- **Mode.** `mode=null` means online when a key is in the environment
  (`WANDB_API_KEY`; a JSON job's `wandb_api_key` arrives that way), offline
  otherwise; `WANDB_MODE` in the environment wins over both. `disabled` for tests.
- **Never blocks training.** Before going online the server is probed (a TCP
  connect of at most `probe_timeout_s`) and `wandb.init` gets `init_timeout_s`;
  when either fails the run goes offline with one warning. Any W&B error later
  is logged once and W&B is switched off for the rest of the run; `finish`
  waits at most `finish_timeout_s`.
- **Complete when `finish` returns.** wandb's `run.finish()` returns before
  wandb-core has written the end of `run-<id>.wandb` (it only informs the
  service); `finish` also tears the service down, which waits until every
  run file is closed, so a reader (`frame sync`, a test) never sees a torn log.
- **One W&B run per frame run.** The W&B id lives in `run.json`; every attempt
  (resume, SLURM requeue) opens the same id with `resume="allow"` and logs at
  explicit steps, so the history continues instead of starting a second run.
- **Cheap.** Training scalars arrive at the loop's logging cadence; at most one
  training row is sent every `min_interval_s` (the newest wins; metrics.jsonl
  keeps every row), validation rows are always sent.
- **No secrets on disk.** Files go to `<run_dir>/wandb/`; keys whose name looks
  secret are dropped from the config sent to W&B; `wandb.login` is never called
  (it would write the key into ~/.netrc); console capture is off.
"""

import logging
import os
import secrets
import socket
import string
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from frame.core import run_record
from frame.core.exits import code_of
from frame.tracking.base import MetricLogger

log = logging.getLogger("frame")

_SECRET_WORDS = ("api_key", "apikey", "token", "password", "secret")


class WandbLogger(MetricLogger):
    """A MetricLogger that sends scalars and prediction examples to W&B.

    Args:
        project: W&B project (the JSON job's `wandb_project_name`).
        entity: W&B entity (user or team); null = the key's default.
        group: W&B group; null = the job's name (for a sweep: the sweep's name, so members group together).
        job_type: W&B job type.
        tags: W&B tags.
        name: W&B display name; null = the run directory relative to outputs/ (a sweep member's overrides).
        mode: online | offline | disabled | null (online with a key in the environment, else offline).
        prediction_examples: validation examples logged as images per epoch (0 = none).
        min_interval_s: at most one training row per this many seconds.
        init_timeout_s: how long `wandb.init` may try to reach the server before going offline.
        probe_timeout_s: TCP connect timeout of the reachability probe before `wandb.init` online.
        finish_timeout_s: how long the end of the run waits for W&B to close.

    Raises:
        ValueError: an unknown `mode`.
    """

    def __init__(
        self,
        project: str = "frame",
        entity: str | None = None,
        group: str | None = None,
        job_type: str = "train",
        tags: list[str] | None = None,
        name: str | None = None,
        mode: str | None = None,
        prediction_examples: int = 0,
        min_interval_s: float = 0.5,
        init_timeout_s: float = 30.0,
        probe_timeout_s: float = 3.0,
        finish_timeout_s: float = 120.0,
    ):
        if mode not in (None, "online", "offline", "disabled"):
            raise ValueError(f"mode={mode!r}: expected online, offline, disabled or null (online when a key is set)")
        self.project, self.entity, self.group, self.job_type = project, entity, group, job_type
        self.tags, self.name, self.mode = list(tags or []), name, mode
        self.prediction_examples = int(prediction_examples)
        self.min_interval_s, self.init_timeout_s = min_interval_s, init_timeout_s
        self.probe_timeout_s, self.finish_timeout_s = probe_timeout_s, finish_timeout_s
        self.run = None
        self.run_dir = None
        self._pending = None  # newest training row not sent yet: (metrics, step, epoch)
        self._last_sent = 0.0

    # ---- contract -----------------------------------------------------------------------------

    def start(self, run_dir, config, resume_step):
        import wandb  # here, not at module level: `frame --help` must not pay for it

        self.run_dir = Path(run_dir)
        record = run_record.read(self.run_dir)
        run_id = record.get("wandb_id") or _new_id()
        run_record.update(self.run_dir, wandb_id=run_id)
        identity = {key: record.get(key) for key in ("config_hash", "git", "frame_version")}
        trainer = dict(config.get("trainer") or {})
        kwargs = dict(
            project=self.project,
            entity=self.entity,
            group=self.group or config.get("name"),
            job_type=self.job_type,
            tags=self.tags,
            name=self.name or _display_name(self.run_dir),
            config={**redact(config), "frame": identity},  # pyright: ignore[reportGeneralTypeIssues]
            id=run_id,
            resume="allow",
            dir=str(self.run_dir),
        )
        mode = self._choose_mode()
        try:
            self.run = wandb.init(mode=mode, settings=self._settings(wandb), **kwargs)
        except Exception as error:  # wandb raises CommError, UsageError, TimeoutError, ...
            if mode != "online":
                self._give_up("could not start", error)
                return
            log.warning(
                "W&B: could not reach the server (%s); logging offline to %s/wandb. Upload later with: frame sync %s",
                _first_line(error),
                self.run_dir,
                self.run_dir,
            )
            self.run = self._init_offline(wandb, kwargs)
            if self.run is None:
                return
        self._safe(self._define_metrics, trainer.get("monitor"), trainer.get("monitor_mode"))
        if resume_step is not None:
            log.info("W&B: continuing run %s from step %d", run_id, resume_step)

    def log_metrics(self, metrics, step, epoch):
        if self.run is None:
            return
        training = not any(key.startswith(("val/", "test/")) for key in metrics)
        now = time.monotonic()
        if training and now - self._last_sent < self.min_interval_s:
            self._pending = (dict(metrics), step, epoch)  # the newest row wins
            return
        if self._pending is not None and self._pending[1] <= step:
            pending, self._pending = self._pending, None
            if pending[1] < step:
                self._send(*pending)
            else:
                metrics = {**pending[0], **metrics}
        self._send(metrics, step, epoch)
        self._last_sent = now

    def log_examples(self, examples, step, epoch):
        if self.run is None or not self.prediction_examples:
            return
        self._safe(self._send_examples, examples, step)

    def finish(self, status):
        if self.run is None:
            return
        if self._pending is not None:
            self._send(*self._pending)
            self._pending = None
        self._safe(self.run.summary.update, {"status": status})  # a pruned run is only "finished" to W&B
        if self.run is None:  # that failed: _safe closed the run
            return
        run, self.run = self.run, None
        offline = run.settings.mode == "offline"
        closer = threading.Thread(target=_quiet_finish, args=(run, code_of(status), True), daemon=True)
        closer.start()
        closer.join(self.finish_timeout_s)
        if closer.is_alive():
            log.warning(
                "W&B did not close within %.0f s; its files are in %s/wandb (upload with: frame sync %s)",
                self.finish_timeout_s,
                self.run_dir,
                self.run_dir,
            )
        elif offline:
            log.info(
                "W&B run %s is offline in %s/wandb; upload with: frame sync %s", run.id, self.run_dir, self.run_dir
            )

    # ---- helpers ------------------------------------------------------------------------------

    def _choose_mode(self) -> str:
        """The configured mode, else WANDB_MODE, else online with a key; online only if the server answers."""
        mode = self.mode or os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        if mode == "online" and not reachable(url, self.probe_timeout_s):
            log.warning(
                "W&B: %s is not reachable; logging offline to %s/wandb. Upload later with: frame sync %s",
                url,
                self.run_dir,
                self.run_dir,
            )
            return "offline"
        return mode

    def _init_offline(self, wandb, kwargs, tries: int = 4):
        """wandb.init offline after a failed online start.

        wandb-core may still hold the run id of the start that timed out for a moment after
        `teardown`; retry the same id (one W&B run per frame run) for a few seconds, and only
        then take a new id, recorded in run.json, rather than lose the run's history.
        """
        for attempt in range(tries):
            wandb.teardown()  # ends wandb's service process, and with it the failed start's stream
            try:
                return wandb.init(mode="offline", settings=self._settings(wandb), **kwargs)
            except Exception as error:
                if "in use" not in str(error):
                    self._give_up("could not start offline either", error)
                    return None
                if attempt < tries - 1:
                    time.sleep(1.0 + attempt)  # 1 + 2 + 3 s at most
        log.warning("W&B: run id %s stays held by wandb-core; logging under a new id", kwargs["id"])
        kwargs["id"] = _new_id()
        run_record.update(self.run_dir, wandb_id=kwargs["id"])
        try:
            return wandb.init(mode="offline", settings=self._settings(wandb), **kwargs)
        except Exception as error:
            self._give_up("could not start offline either", error)
            return None

    def _settings(self, wandb):
        return wandb.Settings(
            init_timeout=self.init_timeout_s, console="off", silent=True, save_code=False, disable_git=True
        )  # run.json has the commit; a git remote URL may carry a token

    def _define_metrics(self, monitor, monitor_mode):
        self.run.define_metric("epoch", hidden=True)
        if monitor:
            self.run.define_metric(monitor, summary="max" if monitor_mode == "max" else "min")

    def _send(self, metrics, step, epoch):
        self._safe(self.run.log, {**metrics, "epoch": epoch}, step=step)

    def _send_examples(self, examples, step):
        import wandb

        images = []
        for panel in examples.panels()[: self.prediction_examples]:
            if panel.segmentation:
                masks = {
                    "ground_truth": {"mask_data": panel.truth, "class_labels": panel.class_names},
                    "prediction": {"mask_data": panel.prediction, "class_labels": panel.class_names},
                }
                images.append(wandb.Image(_uint8(panel.image), masks=masks))
            else:
                images.append(wandb.Image(_uint8(panel.image), caption=panel.caption()))
        self.run.log({"val/examples": images}, step=step)

    def _safe(self, call, *args, **kwargs):
        """Run a W&B call; on the first error warn once and switch W&B off: training goes on."""
        if self.run is None:
            return
        try:
            call(*args, **kwargs)
        except Exception as error:
            log.warning(
                "W&B failed (%s); switching W&B off for the rest of this run, training goes on. "
                "Files so far are in %s/wandb.",
                _first_line(error),
                self.run_dir,
            )
            run, self.run = self.run, None
            threading.Thread(target=_quiet_finish, args=(run, 1), daemon=True).start()

    def _give_up(self, what, error):
        log.warning("W&B %s (%s); training goes on without W&B.", what, _first_line(error))
        self.run = None


def redact(config):
    """A copy of `config` without keys that look secret (api keys, tokens, passwords)."""
    if isinstance(config, dict):
        return {k: redact(v) for k, v in config.items() if not any(w in str(k).lower() for w in _SECRET_WORDS)}
    if isinstance(config, (list, tuple)):
        return [redact(v) for v in config]
    return config


def reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to the server of `url` opens within `timeout` seconds (W&B retries for minutes)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _new_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _display_name(run_dir: Path) -> str:
    parts = run_dir.resolve().parts
    return "/".join(parts[parts.index("outputs") + 1 :]) if "outputs" in parts[:-1] else run_dir.name


def _uint8(image):
    return (image * 255).clip(0, 255).astype("uint8")


def _quiet_finish(run, exit_code, teardown=False):
    """Finish `run`; with `teardown`, also wait until wandb-core has written and closed its files.

    `run.finish()` ends by informing the service, without waiting: right after it the
    run's `run-<id>.wandb` may still lack its last records (seen: only its 7-byte header).
    `wandb.teardown()` waits for the service to close every stream and exit.
    """
    try:
        run.finish(exit_code=exit_code)
        if teardown:
            import wandb

            wandb.teardown()
    except Exception as error:  # closing must not turn a finished training into a crash
        log.warning("W&B: closing the run failed (%s)", _first_line(error))


def _first_line(error) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
