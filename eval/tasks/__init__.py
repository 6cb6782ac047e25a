"""The benchmarks of `gaussiantoken evaluate`, registered in ONE table: `TASKS` (name -> Task, in the order
of the config sections and of the default `tasks:` list).

Adding a benchmark: one file here (its config dataclass and a `Task` subclass, see `base.py`), one entry in
`TASKS`, and its section in a YAML config (configs/eval/). The harness (`eval/run.py`) builds the config
from this table and runs whatever it names.
"""

from __future__ import annotations

from .base import RunContext, Task
from .captioning import Captioning
from .reconstruction import Reconstruction
from .text_to_image import TextToImage
from .vqa import VQA

TASKS: dict[str, Task] = {task.name: task for task in (Reconstruction(), TextToImage(), Captioning(), VQA())}

__all__ = ["TASKS", "Task", "RunContext"]
