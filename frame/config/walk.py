"""Every component of a composed config: the `_target_` nodes that `frame check` checks and
`frame.training.build` imports and instantiates, with what the loop passes each one at run time."""

from omegaconf import DictConfig, ListConfig

# keys frame reads from a component node itself and never passes to its constructor
FRAME_KEYS = {
    "lr_scheduler": ("interval",),  # epoch | step: when the loop calls lr_scheduler.step()
    "optimizer": ("norm_weight_decay", "bias_weight_decay", "param_groups"),  # frame.training.param_groups
}


def components(cfg: DictConfig):
    """(key, node, what the loop passes at run time) for every `_target_` node.

    What the loop passes: an int is how many leading positional arguments it
    gives a `_partial_` node (the model's parameters to the optimizer, the
    optimizer to the scheduler, the item to a function transform, prediction and
    target to a function loss); a tuple names keywords it fills when unset.
    """
    top = [
        ("model", cfg.model, ()),
        ("loss", cfg.loss, 2),
        ("optimizer", cfg.optimizer, 1),
        ("lr_scheduler", cfg.lr_scheduler, 1),
        ("data.dataset", cfg.data.dataset, ()),
    ]
    top += [
        (f"data.{group}[{i}]", node, 1)
        for group in ("transforms", "sample_transforms", "label_transforms", "batch_transforms")
        for i, node in enumerate(cfg.data.get(group) or [])
    ]
    for held in ("val", "test"):  # held-out sets: checked before training, not found wanting after it
        data = cfg.data.get(held)
        if data is not None:
            top += [(f"data.{held}.dataset", data.get("dataset"), ())]
            top += [
                (f"data.{held}.{group}[{i}]", node, 1)
                for group in ("transforms", "sample_transforms", "label_transforms")
                for i, node in enumerate(data.get(group) or [])
            ]
    top += [("inferer", cfg.get("inferer"), ())]
    top += [(f"evaluators.{name}", node, ("labels", "key")) for name, node in cfg.evaluators.items()]
    top += [(f"logger.{name}", node, ()) for name, node in cfg.logger.items()]
    for key, node, runtime in top:
        if isinstance(node, DictConfig) and "_target_" in node:
            yield key, node, runtime
            yield from _nested(key, node)


def _nested(key: str, node: DictConfig):
    """Components given as params of a component (a backbone inside a model, say)."""
    for name, value in node.items():
        if isinstance(value, DictConfig) and "_target_" in value:
            yield f"{key}.{name}", value, ()
            yield from _nested(f"{key}.{name}", value)
        elif isinstance(value, ListConfig):
            for i, item in enumerate(value):
                if isinstance(item, DictConfig) and "_target_" in item:
                    yield f"{key}.{name}[{i}]", item, ()
                    yield from _nested(f"{key}.{name}[{i}]", item)
