"""Benchmark of the splatting backends: one table, forward and backward timed separately.

Methods, side by side in one run on the same inputs:
  loop      - a per-image Python loop (how the paper's code renders: one renderer call per image),
              calling our fastest renderer for the device (cuda on GPU, reference on CPU)
  dense     - the un-chunked PyTorch formula (reference.splat_dense)
  reference - our chunked reference backend (backend="torch")
  cuda      - our CUDA backend (GPU only), default (tile) backward
  cuda_gauss - the same with GAUSSIANTOKEN_SPLAT_BWD=gaussian (the first, warp-per-Gaussian backward)
For the cuda methods, "kernel fwd/bwd us" times the extension calls alone (no Python autograd or
dispatch layers): CUDA events around --iters back-to-back calls, divided by --iters.
Workloads: A (B=256, M=256, C=8, 32x32), B (B=64, M=1024, C=64, 64x64), cpu (B=32, M=64, C=8, 16x16).
GPU timings: CUDA events after warm-up, median of --iters runs; CPU: perf_counter, median of --cpu-iters.
Peak memory: torch.cuda.max_memory_allocated on GPU; on CPU the growth of the process's max RSS
(resource.getrusage; monotonic, so only the first method to grow it shows its true peak).
Each method's output is checked against the reference (max |diff| / max |ref|).

  python bench/splat.py --device cuda --json results.json
  python bench/splat.py --device cpu --workloads cpu
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch

from gaussiantoken.tokenizer.render import splat
from gaussiantoken.tokenizer.render.reference import splat_dense

WORKLOADS = {"A": (256, 256, 8, 32, 32), "B": (64, 1024, 64, 64, 64), "cpu": (32, 64, 8, 16, 16)}


def make_inputs(B, M, C, H, W, device, seed=0):
    """Gaussians on a jittered grid with std devs of 0.5-1.5 grid spacings (like anchor Gaussians)."""
    g = torch.Generator().manual_seed(seed)
    spacing = math.sqrt(H * W / M)  # pixels between neighbouring Gaussians
    means = torch.rand(B, M, 2, generator=g) * 2 - 1
    px = torch.tensor([2.0 / W, 2.0 / H])
    scales = spacing * (0.5 + torch.rand(B, M, 2, generator=g)) * px
    rotations = (torch.rand(B, M, generator=g) * 2 - 1) * math.pi
    features = torch.randn(B, M, C, generator=g)
    opacities = 0.2 + 0.8 * torch.rand(B, M, generator=g)
    return [t.to(device) for t in (means, scales, rotations, features, opacities)]


def render_fn(method, H, W, device):
    if method == "loop":
        backend = "cuda" if device == "cuda" else "torch"

        def fn(m, s, r, f, o):
            return torch.cat(
                [splat(m[b : b + 1], s[b : b + 1], r[b : b + 1], f[b : b + 1], H, W, o[b : b + 1], backend=backend) for b in range(m.shape[0])]
            )

        return fn
    if method == "dense":
        return lambda m, s, r, f, o: splat_dense(m, s, r, f, H, W, o)
    backend = {"reference": "torch", "cuda": "cuda", "cuda_gauss": "cuda"}[method]
    return lambda m, s, r, f, o: splat(m, s, r, f, H, W, o, backend=backend)


class Timer:
    def __init__(self, device):
        self.device = device

    def __call__(self, fn, iters, warmup, setup=None):
        times = []
        for i in range(warmup + iters):
            state = setup() if setup else None
            if self.device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn(state)
                end.record()
                torch.cuda.synchronize()
                t = start.elapsed_time(end) * 1e3  # us
            else:
                t0 = time.perf_counter()
                fn(state)
                t = (time.perf_counter() - t0) * 1e6
            if i >= warmup:
                times.append(t)
        return statistics.median(times)


def kernel_times(inputs, grad, H, W, iters):
    """(forward us, backward us) of the extension calls alone, back to back on the stream."""
    from gaussiantoken.tokenizer.render.cuda import DEFAULT_TILE, backward_variant, extension

    ext = extension()
    a = [t.detach().float().contiguous() for t in inputs]
    g = grad.float().contiguous()
    variant = backward_variant()

    def loop(fn):
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) * 1e3 / iters

    fwd = loop(lambda: ext.forward(*a, H, W, *DEFAULT_TILE))
    bwd = loop(lambda: ext.backward(g, *a, H, W, variant))
    return fwd, bwd


def bench_one(method, name, inputs, ref_out, args, timer):
    if method == "cuda_gauss":
        previous = os.environ.get("GAUSSIANTOKEN_SPLAT_BWD")
        os.environ["GAUSSIANTOKEN_SPLAT_BWD"] = "gaussian"
        try:
            return _bench_one(method, name, inputs, ref_out, args, timer)
        finally:
            if previous is None:
                os.environ.pop("GAUSSIANTOKEN_SPLAT_BWD", None)
            else:
                os.environ["GAUSSIANTOKEN_SPLAT_BWD"] = previous
    return _bench_one(method, name, inputs, ref_out, args, timer)


def _bench_one(method, name, inputs, ref_out, args, timer):
    B, M, C, H, W = WORKLOADS[name]
    fn = render_fn(method, H, W, args.device)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    grad = torch.randn(B, C, H, W, device=args.device, generator=None)
    cuda = args.device == "cuda"
    iters, warmup = (args.iters, 3) if cuda else (args.cpu_iters, 1)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn(*leaves)
    err = ((out.detach().float() - ref_out).abs().max() / ref_out.abs().max()).item()
    fwd = timer(lambda _: fn(*leaves), iters, warmup)

    def setup():
        for t in leaves:
            t.grad = None
        return fn(*leaves)

    bwd = timer(lambda o: o.backward(grad), iters, warmup, setup=setup)
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024  # KiB -> MiB (Linux)
    kfwd = kbwd = float("nan")
    if method.startswith("cuda"):
        kfwd, kbwd = kernel_times(inputs, grad, H, W, iters)
    return {
        "workload": name,
        "method": method,
        "fwd_us": fwd,
        "bwd_us": bwd,
        "kernel_fwd_us": kfwd,
        "kernel_bwd_us": kbwd,
        "peak_mib": peak,
        "rel_err": err,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workloads", default=None, help="comma list of A,B,cpu (default: all on cuda, cpu on cpu)")
    p.add_argument("--methods", default="loop,dense,reference,cuda,cuda_gauss")
    p.add_argument("--iters", type=int, default=30, help="timed runs per GPU measurement")
    p.add_argument("--cpu-iters", type=int, default=3, help="timed runs per CPU measurement")
    p.add_argument("--skip-dense-large", action="store_true", help="on CPU, skip dense (and loop) on workloads A/B")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = (args.workloads or ("A,B,cpu" if args.device == "cuda" else "cpu")).split(",")
    methods = [m for m in args.methods.split(",") if not m.startswith("cuda") or args.device == "cuda"]
    timer = Timer(args.device)
    rows = []
    for name in names:
        B, M, C, H, W = WORKLOADS[name]
        inputs = make_inputs(B, M, C, H, W, args.device)
        with torch.no_grad():
            ref_out = splat(*inputs[:4], H, W, inputs[4], backend="torch").float()
        for method in methods:
            if args.device == "cpu" and args.skip_dense_large and name in ("A", "B") and method in ("dense", "loop"):
                continue
            row = bench_one(method, name, inputs, ref_out, args, timer)
            rows.append(row)
            print(f"  measured {name:>3} {method:<9} fwd {row['fwd_us']:.1f} us  bwd {row['bwd_us']:.1f} us", file=sys.stderr, flush=True)
    print(f"\nsplat benchmark on {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU, %d threads' % torch.get_num_threads()}), torch {torch.__version__}")
    print(
        f"{'workload':<9}{'method':<11}{'forward us':>12}{'backward us':>13}{'kernel fwd us':>15}{'kernel bwd us':>15}"
        f"{'peak MiB':>10}{'max|d|/max|ref|':>17}"
    )
    for r in rows:
        print(
            f"{r['workload']:<9}{r['method']:<11}{r['fwd_us']:>12.1f}{r['bwd_us']:>13.1f}{r['kernel_fwd_us']:>15.1f}"
            f"{r['kernel_bwd_us']:>15.1f}{r['peak_mib']:>10.1f}{r['rel_err']:>17.2e}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "torch": torch.__version__, "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
