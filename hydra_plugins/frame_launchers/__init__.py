"""frame's Hydra plugins: launchers (`frame_sequential`, `frame_local`, `frame_slurm`: one module
each) and the default sweeper (`frame`, in `sweeper`); `jobs` is what every launcher does where a
member runs. Hydra's plugin scan finds them (installed, or editable: pyproject lists the
`hydra_plugins` namespace) and runs each module, which stores its config in Hydra's ConfigStore:
any Hydra app can pick them, e.g. `python app.py -m hydra/launcher=frame_local`."""
