"""The bottom layer: run-time machinery every package imports, and that imports no other gaussiantoken package.

- `config`: YAML run configs -> typed dataclasses (`load_run_config`, `check_config`, `save_run_config`);
- `files`: atomic file and directory writes (`atomic_write_text`, `atomic_directory`, `recover_directory`);
- `integrity`: checks of saved files (`CheckpointError`, `check_safetensors_file`, `check_pretrained_dir`, ...);
- `stop`: `StopFlag` (SIGTERM/SIGINT -> checkpoint, then exit);
- `dist`: process-group agreement (`agree_max`, `dist_sum_`, `dist_cat`);
- `schedule`: the shared learning-rate rule (`warmup_cosine`);
- `run_lock`: one writer per run directory;
- `model_dirs`: is this a saved gaussiantoken model directory of the right kind (the model_type names, once).
- `clock`: `RunClock`, a run's seconds over all its processes (agreed across ranks);
- `finalize`: `finalize()`, OUTPUT/final written atomically with the resolved config (both trainers), and
  `write_summary` (a trainer command's `--summary FILE`);
- `entry`: the training commands' exit statuses (0, 1, 2, 143) and one-line errors (`run_command`);
- `process_state`: what a run puts back when it ends (rendezvous variables, accelerate's shared state);
- `child`: `run_child`, a command in a child process with SIGTERM/SIGINT passed on (the demo's stages).

Nothing is imported here: `import gaussiantoken.runtime.files` costs only what that module needs.
"""
