"""DDP that works inside Hydra multirun.

Lightning's DDP starts ranks 1..N-1 by re-running ``sys.argv``; under ``-m`` that re-runs the whole
sweep in every child, and the children write into the single-run folder. This strategy starts them
with the current *job's* overrides (what Hydra resolved for this job, no ``-m``) and that job's
output folder, so each job of a sweep gets its own correct DDP group.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import lightning.pytorch.strategies.launchers.subprocess_script as subprocess_script
from lightning.pytorch.strategies import DDPStrategy


def job_subprocess_cmd(local_rank: int) -> tuple[Sequence[str], str]:
    """Command and cwd that re-create this Hydra job (not the sweep) in a child process."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hc = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hc.overrides.task)
    command += [
        f'hydra.run.dir="{hc.runtime.output_dir}"',
        f"hydra.job.name={hc.job.name}_ddp_rank_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return command, get_original_cwd()


class _JobScriptLauncher(subprocess_script._SubprocessScriptLauncher):
    def _call_children_scripts(self) -> None:
        original = subprocess_script._hydra_subprocess_cmd
        subprocess_script._hydra_subprocess_cmd = job_subprocess_cmd
        try:
            super()._call_children_scripts()
        finally:
            subprocess_script._hydra_subprocess_cmd = original


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose child processes re-create the current Hydra job, also under multirun."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("start_method", "popen")
        super().__init__(**kwargs)

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, subprocess_script._SubprocessScriptLauncher):
            self._launcher = _JobScriptLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
