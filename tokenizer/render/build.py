"""Lazy build of the splatting CUDA extension (`csrc/`), on first CUDA use, never at import.

`load_extension()` compiles `csrc/splat_kernels.cu` + `csrc/splat_ext.cpp` with
`torch.utils.cpp_extension.load` (ninja) and caches the module for the process. Build settings:

- `TORCH_CUDA_ARCH_LIST` is set explicitly for the build: the detected device architecture plus
  "9.0+PTX" (an existing `TORCH_CUDA_ARCH_LIST` in the environment wins).
- The build directory is `~/.cache/gaussiantoken/ext/<key>` (root overridable with
  `GAUSSIANTOKEN_EXT_DIR`), where `<key>` hashes the torch version, its CUDA version, the arch list
  and the sources, so an edit or an upgrade rebuilds and nothing stale is ever loaded.
- torch's build lock (`<build dir>/lock`) is left behind when a build process dies; a lock older
  than `STALE_LOCK_MINUTES` is removed before building, so a later build never waits forever.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import time

CSRC = pathlib.Path(__file__).resolve().parent / "csrc"
SOURCES = ("splat_kernels.cu", "splat_ext.cpp")
HEADERS = ("splat.h",)
STALE_LOCK_MINUTES = 10.0
_MODULE = None


def arch_list() -> str:
    """The TORCH_CUDA_ARCH_LIST used for the build: the env var if set, else detected arch + 9.0+PTX."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    import torch

    archs = []
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        if (major, minor) != (9, 0):
            archs.append(f"{major}.{minor}")
    archs.append("9.0+PTX")
    return ";".join(archs)


def build_key(archs: str) -> str:
    """Hash of torch version, CUDA version, arch list and every source file's bytes."""
    import torch

    h = hashlib.sha256()
    h.update(f"torch={torch.__version__};cuda={torch.version.cuda};arch={archs}".encode())
    for name in SOURCES + HEADERS:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    return h.hexdigest()[:16]


def build_dir(key: str) -> pathlib.Path:
    root = os.environ.get("GAUSSIANTOKEN_EXT_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gaussiantoken", "ext")
    return pathlib.Path(root) / key


def remove_stale_lock(directory: pathlib.Path, max_age_minutes: float = STALE_LOCK_MINUTES) -> bool:
    """Delete `directory/lock` if it is older than `max_age_minutes` (a dead build's leftover)."""
    lock = directory / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > max_age_minutes * 60.0:
        try:
            lock.unlink()
        except FileNotFoundError:
            pass
        return True
    return False


def load_extension(verbose: bool | None = None):
    """Build (once per source/torch/arch key) and import the extension; cached for the process."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    from torch.utils.cpp_extension import load

    archs = arch_list()
    key = build_key(archs)
    directory = build_dir(key)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_lock(directory)
    if verbose is None:
        verbose = os.environ.get("GAUSSIANTOKEN_EXT_VERBOSE", "") not in ("", "0")
    previous = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    try:
        _MODULE = load(
            name=f"gaussiantoken_splat_{key}",
            sources=[str(CSRC / s) for s in SOURCES],
            extra_include_paths=[str(CSRC)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3", "-lineinfo"],
            build_directory=str(directory),
            verbose=verbose,
        )
    finally:
        if previous is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = previous
    return _MODULE


__all__ = ["load_extension", "arch_list", "build_key", "build_dir", "remove_stale_lock", "STALE_LOCK_MINUTES"]
