"""frame's Hydra plugins: launchers (`sequential`, `local`, `slurm`: one module each) and the
default sweeper (`sweeper`); `jobs` is what every launcher does where a member runs."""


def register() -> None:
    """Hydra finds plugins by scanning the `hydra_plugins` namespace, which misses frame's
    launchers and sweeper under an editable install (`pip install -e`); register them by hand.
    Only a multirun needs them, and importing them costs ~0.1 s, so frame's command line calls
    this for -m only."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scan first: the scan re-executes Hydra's BasicSweeper module, which FrameSweeper extends
    from hydra_plugins.frame_launchers import local, sequential, slurm, sweeper

    for plugin in (sequential.FrameSequentialLauncher, local.FrameLocalLauncher, slurm.FrameSlurmLauncher,
                   sweeper.FrameSweeper):
        if f"{plugin.__module__}.{plugin.__name__}" not in plugins.class_name_to_class:
            plugins.register(plugin)
