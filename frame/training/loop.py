"""The training loop: read it top to bottom.

`fit(job)` trains the job built by `frame.training.build` and returns the best value of
the monitored metric. Per step (of `accumulate_grad_batches` batches, one by default):
forward under autocast, backward, unscale, clip, bad-gradient check, optimizer
step, scheduler step; `step` counts optimizer steps (logging and checkpoint intervals too). Per epoch:
validation through the evaluators, scheduler step, checkpoint, log. Scalars
stay on the device and are read only every `log_every_n_steps`.
"""

import contextlib
import logging
import math
import signal
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from frame.compat.torch import non_finite_check_, steps_with_scaler
from frame.core import run_record
from frame.core.errors import FrameError, did_you_mean
from frame.core.exits import EXIT_INTERRUPTED
from frame.core.signals import StopFlag
from frame.tracking.examples import Examples
from frame.training.checkpoint import CheckpointError, load_checkpoint
from frame.training.ema import trained_weights
from frame.training.evaluators import described, update
from frame.training.first_batch import check_class_indices, check_first_batches, collect
from frame.training.state import TrainState, capture, restore, restore_rng
from frame.training.trial import sweep_trial
from frame.training.validation import infer, score

log = logging.getLogger("frame")


def fit(job, stop: StopFlag | None = None) -> float | None:
    cfg = OmegaConf.to_object(job.cfg.trainer)  # a plain TrainerConf: OmegaConf lookups cost ~0.2 ms each
    device, model = job.device, job.train_model  # the DDP wrapper when several processes train
    optimizer, scheduler, scaler = job.optimizer, job.scheduler, job.scaler
    per_step = scheduler is not None and (job.cfg.lr_scheduler or {}).get("interval", "epoch") == "step"
    state = TrainState(maximize=cfg.monitor_mode.value == "max")
    guard = BadStepGuard(job, cfg.max_bad_steps)
    if device.type == "cuda" and cfg.detect_bad_gradients and guard.host:
        log.warning(
            "%s takes no found_inf (no fused implementation in use): the non-finite check costs a host "
            "sync every step; set optimizer.fused=true where the class has it, or "
            "trainer.detect_bad_gradients=false",
            type(optimizer).__name__,
        )
    window = StepWindow(device)
    counters = {"window": window, "guard": guard}  # running sums that checkpoints carry over

    resumed = job.resume_state is not None
    if resumed:
        restore(job, state, job.resume_state, counters)
        log.info("resuming from %s at epoch %d, step %d", job.resume_state["_path"], state.epoch, state.step)
        if state.epoch >= cfg.epochs:
            log.info(
                "run already finished (%d epochs); nothing to do. Best %s = %s", state.epoch, cfg.monitor, state.best
            )
            return state.best
    autocast = (
        contextlib.nullcontext()
        if cfg.precision.value == "fp32"  # a disabled autocast still costs ~3 us a step
        else torch.autocast(device.type, dtype=_AUTOCAST[str(cfg.precision.value)])
    )
    job.train_sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
    check_first_batches(job, autocast, cfg.monitor)  # shapes, class indices, dtypes, metric keys; changes nothing
    for logger in job.loggers:
        logger.start(job.run_dir, job.config_dict, state.step if resumed else None)
    if resumed:
        restore_rng(job.resume_state)  # last: importing and starting loggers may draw from the global RNGs

    stop = (stop or StopFlag()).install()  # the caller's flag: shared by the ranks, read for SLURM requeue
    params = [p for p in model.parameters() if p.requires_grad]
    accumulate = cfg.accumulate_grad_batches
    no_sync = getattr(
        model, "no_sync", contextlib.nullcontext
    )  # DDP: all-reduce gradients on the final micro-batch only
    keep = max((logger.prediction_examples for logger in job.loggers), default=0)
    trial = sweep_trial(job)  # an Optuna sweep member's trial: its pruner may stop the run after an epoch
    status = "failed"
    try:
        for epoch in range(state.epoch, cfg.epochs):
            model.train()
            job.train_sampler.set_epoch(epoch, start_batch=state.batch_in_epoch)
            epoch_start, epoch_batches = time.perf_counter(), 0
            start = state.batch_in_epoch  # > 0 when resumed mid-epoch
            batches = start + len(job.train_loader)  # the whole epoch, also when resumed mid-epoch
            for logger in job.loggers:
                logger.epoch_start(epoch, len(job.train_loader))
            step_loss = None  # the step's summed loss: set by its first micro-batch (micro == 0)
            for sample, target in job.train_loader:
                sample = sample.to(device, non_blocking=True, memory_format=job.memory_format)
                target = target.to(device, non_blocking=True)
                if job.batch_transforms is not None:  # MixUp, CutMix: seeded per (epoch, batch), so resumes replay them
                    sample, target = job.batch_transforms(sample, target, epoch, state.batch_in_epoch)
                # accumulate_grad_batches: `group` batches make one optimizer step, each loss scaled by 1 / group
                # (the mean loss of the larger batch); at a ragged epoch end the last step averages what is left
                micro = (state.batch_in_epoch - start) % accumulate
                group = min(accumulate, batches - state.batch_in_epoch + micro)
                final = micro + 1 == group
                with contextlib.nullcontext() if final else no_sync():  # DDP decides in the forward
                    with autocast:
                        loss = _loss(job, model(sample), target, state.batch_in_epoch, epoch)
                    scaler.scale(loss / group if group > 1 else loss).backward()
                step_loss = loss.detach() if micro == 0 else step_loss + loss.detach()
                state.batch_in_epoch += 1
                epoch_batches += 1
                if not final:
                    continue
                if group > 1:
                    step_loss = step_loss / group

                ok = None
                if cfg.grad_norm_clip or cfg.detect_bad_gradients:
                    scaler.unscale_(optimizer)  # clip and check real gradients, not scaled ones
                    if cfg.grad_norm_clip:
                        finite = torch.isfinite(torch.nn.utils.clip_grad_norm_(params, cfg.grad_norm_clip))
                    else:  # one fused check instead of a norm: ~5 us, not ~125 us, a step of a small model
                        finite = all_finite(params, guard.found_inf)
                    if cfg.detect_bad_gradients:
                        ok = torch.isfinite(step_loss) & finite
                guard.step(optimizer, scaler, ok, state.step + 1)  # skips the update when not ok
                optimizer.zero_grad(set_to_none=True)
                if per_step:
                    scheduler.step()  # pyright: ignore[reportCallIssue]

                state.step += 1
                if job.ema is not None:
                    job.ema.update(job.model, state.step)
                window.add(step_loss, ok)
                if state.step % cfg.log_every_n_steps == 0:
                    guard.check(state.step)
                    _log(
                        job,
                        window.read(optimizer, time.perf_counter() - epoch_start, epoch_batches, sample.shape[0]),
                        state,
                    )
                if state.batch_in_epoch < batches:  # the epoch's last batch is checkpointed after validation
                    every = cfg.checkpoint_every_n_steps
                    stopping = stop.requested  # read once: a signal between two reads would skip the checkpoint
                    if (
                        stopping
                        or (every and state.step % every == 0)
                        or (job.checkpoints is not None and job.checkpoints.due())
                    ):
                        _save(job, state, counters)
                    if stopping:
                        status = "interrupted"
                        raise _stopped(stop, state)

            guard.check(state.step)
            if (
                epoch_batches and state.step % cfg.log_every_n_steps
            ):  # the epoch's last steps: every epoch logs train/loss
                _log(
                    job,
                    window.read(optimizer, time.perf_counter() - epoch_start, epoch_batches, sample.shape[0]),
                    state,
                )
            metrics, examples = validate(job, autocast, keep, job.ema.model if job.ema is not None else None)
            if job.ema is not None and job.ema.both:  # the raw weights beside their average
                raw, _ = validate(job, autocast)
                metrics.update({key.replace("val/", "val_raw/", 1): value for key, value in raw.items()})
            metrics["train/epoch_time_s"] = time.perf_counter() - epoch_start
            monitored = metrics.get(cfg.monitor)
            if monitored is None:
                raise FrameError(
                    f"trainer.monitor={cfg.monitor} is not a validation metric; "
                    f"choose one of {sorted(metrics)}.{did_you_mean(cfg.monitor, metrics)}"
                )
            if scheduler is not None and not per_step:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(monitored)
                else:
                    scheduler.step()
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            improved = state.update_best(monitored)
            _log(job, metrics, state)
            if examples is not None:
                for logger in job.loggers:
                    logger.log_examples(examples, step=state.step, epoch=state.epoch)
            # after every epoch, unless checkpoint_every_n_minutes spaces last.pt out; the best, the last epoch
            # and a stop are never skipped (the flag read once, as at a step)
            stopping, checkpoints = stop.requested, job.checkpoints
            saved = (
                checkpoints is None
                or improved
                or stopping
                or state.epoch == cfg.epochs
                or checkpoints.due(epoch_end=state.epoch)
            )
            if saved:
                _save(job, state, counters, best=improved, epoch_end=True)
            log.info(
                "epoch %d/%d  %s",
                state.epoch,
                cfg.epochs,
                "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" in k and k.count("/") == 1),
            )
            if stopping and state.epoch < cfg.epochs:
                status = "interrupted"
                raise _stopped(stop, state)
            if trial is not None and state.epoch < cfg.epochs and trial.pruned(state.epoch, monitored):
                status = "pruned"  # this epoch's checkpoint is the run's last; no test set for a pruned trial
                if not saved:
                    _save(job, state, counters, epoch_end=True)
                return state.best
        if job.test_loader is not None and job.checkpoints is not None:  # rank 0 tests on its own
            _test(job, state, autocast)
        status = "complete"
        return state.best
    finally:
        try:  # every way out waits for the checkpoint in flight: a requeued job resumes from a whole file
            if job.checkpoints is not None:
                job.checkpoints.wait()  # before stop.restore(): a second signal meanwhile only sets the flag
        except CheckpointError:
            status = "failed"
            raise
        finally:
            stop.restore()
            for logger in job.loggers:
                logger.finish(status)


def _loss(job, prediction, target, batch: int, epoch: int | None = None):
    """The loss of a training batch (of `epoch`) or a validation batch. Its IndexError is explained: a
    class index the output has no channel for, in a later batch than the one checked before the first
    epoch (a traceback, or on a GPU a device-side assert, otherwise)."""
    try:
        return job.loss_fn(prediction, target)
    except IndexError:
        where = (
            f"epoch {epoch + 1}, training batch {batch + 1}" if epoch is not None else f"validation batch {batch + 1}"
        )
        check_class_indices(
            job.loss_fn, prediction, target, f"output {described(prediction)}, target {described(target)} ({where})"
        )
        raise


@torch.no_grad()
def validate(job, autocast, keep: int = 0, model=None) -> tuple[dict[str, float], Examples | None]:
    """Loss and every evaluator over the validation set (keys `val/...`), and the first `keep` items as Examples;
    of `model` when given (the EMA of the weights), else of the job's model."""
    model = model if model is not None else job.model
    model.eval()
    for evaluator in job.evaluators.values():
        evaluator.reset()
    total, batches = torch.zeros((), device=job.device), 0
    kept = []
    for sample, target in job.val_loader:
        sample = sample.to(job.device, non_blocking=True)
        target = target.to(job.device, non_blocking=True)
        with autocast:
            prediction = infer(model, sample, job.inferer)
            total += _loss(job, prediction, target, batches).float()
        batches += 1
        if sum(len(k[0]) for k in kept) < keep:  # one copy to the host per kept batch, once per epoch
            kept.append([t[:keep].detach().float().cpu() for t in (sample, target, prediction)])
        for name, evaluator in job.evaluators.items():
            update(name, evaluator, prediction.float(), target, f"validation batch {batches}")
    metrics = {"val/loss": float(total) / max(batches, 1)}
    metrics.update({f"val/{key}": value for key, value in collect(job.evaluators).items()})
    examples = None
    if kept:
        samples, targets, predictions = (torch.cat(parts)[:keep] for parts in zip(*kept))
        examples = Examples(samples, targets, predictions, job.labels)
    return metrics, examples


def _test(job, state, autocast):
    """best.pt scored on `data.test`: `test/...` into the loggers (metrics.jsonl, W&B's summary) and run.json."""
    job.checkpoints.wait()  # best.pt may still be in the writer's hands
    best = job.checkpoints.dir / "best.pt"
    if not best.is_file():  # the monitored value was never a number (NaN every epoch): nothing to test
        log.warning("no best.pt (%s was never a number): the test set is not scored", job.cfg.trainer.monitor)
        return
    job.model.load_state_dict(trained_weights(load_checkpoint(best)))  # its EMA when the run keeps one
    metrics, _ = score(
        job.model, job.test_loader, job.evaluators, job.device, job.loss_fn, autocast=autocast, inferer=job.inferer
    )
    metrics = {f"test/{key}": value for key, value in metrics.items()}
    _log(job, metrics, state)
    run_record.update(job.run_dir, test={"checkpoint": str(best), "items": len(job.test_loader.dataset), **metrics})
    log.info("test (best.pt)  %s", "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.count("/") == 1))


def _log(job, metrics, state):
    for logger in job.loggers:
        logger.log_metrics(metrics, step=state.step, epoch=state.epoch)


def _save(job, state, counters, *, best=False, epoch_end=False):
    if job.checkpoints is None:  # not rank 0
        return
    params = list(job.model.parameters())
    if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):  # one host sync
        raise CheckpointError(
            f"weights are not finite at step {state.step}; not writing a checkpoint. "
            f"The last good checkpoint stays in {job.checkpoints.dir}."
        )
    job.checkpoints.save(capture(job, state, counters), best=best, epoch_end=epoch_end)


def _stopped(stop, state) -> SystemExit:
    log.warning(
        "stopped by %s at epoch %d, step %d; checkpoint written. Run the same command again to continue.",
        signal.Signals(stop.signal).name,
        state.epoch,
        state.step,
    )
    return SystemExit(EXIT_INTERRUPTED)


_AUTOCAST = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class StepWindow:
    """Training scalars summed between two log points, without a per-step sync.

    On a GPU the sums stay on the device; on the CPU reading a value costs nothing, and
    Python numbers cost less than the three tensor operations a step would take there.
    """

    def __init__(self, device):
        self.device, self.host = device, device.type == "cpu"
        self.bad_total = 0
        self._zero()

    def add(self, loss, ok):
        if self.host:
            good = ok is None or bool(ok)
            self.loss += float(loss) if good else 0.0
            self.steps += good
            self.bad += not good
        elif ok is None:
            self.loss += loss.float()
            self.steps += 1
        else:
            self.loss += torch.where(ok, loss.float(), 0.0)
            self.steps += ok
            self.bad += ~ok

    def read(self, optimizer, elapsed, epoch_batches, batch_size):
        steps = float(self.steps)
        bad = int(self.bad)
        self.bad_total += bad
        metrics = {
            "train/loss": float(self.loss) / steps if steps else math.nan,
            "train/lr": optimizer.param_groups[0]["lr"],
            "train/bad_steps": self.bad_total,
            "train/samples_per_s": epoch_batches * batch_size / max(elapsed, 1e-9),
        }
        self._zero()
        return metrics

    def _zero(self):
        if self.host:
            self.loss, self.steps, self.bad = 0.0, 0, 0
        else:
            self.loss, self.steps, self.bad = (torch.zeros((), device=self.device) for _ in range(3))

    def state_dict(self) -> dict:  # the sums since the last log point, so a resumed run logs the same mean
        sums = {name: getattr(self, name) for name in ("loss", "steps", "bad")}
        if not self.host:
            sums = {name: value.to("cpu", copy=True) for name, value in sums.items()}
        return {**sums, "bad_total": self.bad_total}

    def load_state_dict(self, saved: dict) -> None:  # either kind: a run may resume on another device
        for name, kind in (("loss", float), ("steps", int), ("bad", int)):
            if self.host:
                setattr(self, name, kind(saved[name]))
            else:
                getattr(self, name).copy_(torch.as_tensor(saved[name]))
        self.bad_total = saved["bad_total"]


class BadStepGuard:
    """Skips optimizer steps with a non-finite loss or gradient and stops after too many in a row.

    An optimizer that takes `found_inf` (the fused Adam, AdamW, SGD, Adagrad, which `frame.training.build`
    picks on CUDA) gets the flag on the device and its kernel skips the update: no host sync, and
    the run of bad steps is counted on the device and read at log points. Any other optimizer
    needs the flag on the host, which on a GPU is one sync per step.
    """

    def __init__(self, job, max_consecutive):
        self.max = max_consecutive
        self.last = Path(job.run_dir) / "checkpoints" / "last.pt"  # what the stop message may point to
        self.checkpoints = job.checkpoints  # its background write must land before the message looks
        self.host = not steps_with_scaler(job.optimizer)
        self.scaled = job.scaler.is_enabled()
        self.consecutive = 0 if self.host else torch.zeros((), device=job.device)
        self.found_inf = {}  # device -> (flag, 1.0): all_finite's buffers, made once

    def step(self, optimizer, scaler, ok, step):
        """One optimizer step; `ok` is a device bool (False: skip the update) or None (unchecked)."""
        if ok is not None:
            if self.host:
                ok = self._count(ok, step)
            else:
                self.consecutive = (self.consecutive + 1) * ~ok
        if ok is None or self.scaled:
            scaler.step(optimizer)  # GradScaler skips steps with inf/NaN gradients itself
            scaler.update()
        elif self.host:
            if ok:
                optimizer.step()
        else:
            optimizer.found_inf = (~ok).float()
            optimizer.step()
            del optimizer.found_inf

    def _count(self, ok, step) -> bool:
        ok = bool(ok)
        self.consecutive = 0 if ok else self.consecutive + 1
        if not ok:
            log.warning("step %d: non-finite loss or gradient, optimizer step skipped", step)
            self.check(step)
        return ok

    def state_dict(self) -> dict:
        return {"consecutive": int(self.consecutive)}

    def load_state_dict(self, saved: dict) -> None:
        self.consecutive = (
            saved["consecutive"] if self.host else torch.full_like(self.consecutive, saved["consecutive"])
        )

    def check(self, step):
        if int(self.consecutive) >= self.max:
            try:  # a last.pt still being written is kept all the same: let it land, then name it
                self.checkpoints.wait()
            except CheckpointError:  # that write failed: the files before it are what is kept
                pass
            raise NonFiniteError(
                f"{int(self.consecutive)} consecutive steps up to step {step} had a non-finite loss or "
                f"gradient (trainer.max_bad_steps={self.max}); stopping. "
                + (
                    f"The last good checkpoint, {self.last}, is kept."
                    if self.last.is_file()
                    else "No checkpoint had been written: nothing to resume from; lower the learning rate and start again."
                )
            )


def all_finite(params, found_inf: dict):
    """A device bool: every gradient finite. GradScaler's own fused check at scale 1 (it multiplies
    each gradient by exactly 1), called per device and dtype as the kernel needs; `found_inf` keeps
    one flag (and a 1.0) per device between steps. Sparse gradients get a norm instead."""
    groups = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.device, p.grad.dtype, p.grad.is_sparse), []).append(p.grad)
    if any(sparse for _, _, sparse in groups):
        return torch.isfinite(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
    devices = {device for device, _, _ in groups}
    for device in devices:
        found_inf.setdefault(device, (torch.zeros(1, device=device), torch.ones(1, device=device)))[0].zero_()
    for (device, _, _), grads in groups.items():
        non_finite_check_(grads, *found_inf[device])
    flags = [found_inf[device][0] for device in devices]
    return (sum(flags) == 0).squeeze(0) if flags else torch.ones((), dtype=torch.bool)


class NonFiniteError(FrameError):
    """Training diverged: too many consecutive non-finite steps."""
