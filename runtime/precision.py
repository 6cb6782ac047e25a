"""Which float precision a training run computes in: the one switch point for "bf16 where it is fast".

bf16 pays where the hardware multiplies bf16 natively: CUDA GPUs, and CPUs with AVX512-BF16 or AMX (oneDNN
then has bf16 kernels for matmuls and convolutions). Elsewhere a CPU has to emulate bf16 (not measured here;
`auto` keeps fp32 there). Measured on the 2-core build machine (AVX512-BF16, bench/RESULTS.md): the demo's LM step 1.50x
faster (DeepSpeed bf16 + eager attention), the Shapes tokenizer step about 1.4x (autocast), losses level.

- `cpu_has_native_bf16()`: does this CPU compute bf16 natively (torch's own CPU capability probes)?
- `resolve_precision(choice, on_cuda)`: "auto" | "bf16" | "fp32" -> "bf16" | "fp32" ("auto": bf16 on CUDA and
  on CPUs with native bf16, else fp32).

The trainers' own `auto` settings stay fp32 on CPU (a library default that tests compare against); the demo
(`pipelines.demo --precision`) is what resolves `auto` here and passes the result to both trainers.
"""

from __future__ import annotations

PRECISIONS = ("auto", "bf16", "fp32")


def cpu_has_native_bf16() -> bool:
    """True where the CPU has AMX tiles or AVX512-BF16 (per torch's capability probes; False if torch has none)."""
    import torch

    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:  # a probe that cannot run on this build says nothing
            continue
    return False


def resolve_precision(choice: str, on_cuda: bool) -> str:
    """"auto" | "bf16" | "fp32" -> "bf16" | "fp32" (see the module docstring)."""
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {choice!r}")
    if choice != "auto":
        return choice
    return "bf16" if on_cuda or cpu_has_native_bf16() else "fp32"


__all__ = ["PRECISIONS", "cpu_has_native_bf16", "resolve_precision"]
