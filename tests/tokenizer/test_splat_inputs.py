"""Bad input to `splat`: every malformed argument raises a ValueError naming it; backend="cuda" where it
cannot run raises a clear RuntimeError saying why."""

import pytest
import torch

from gaussiantoken.tokenizer.render import splat
from gaussiantoken.tokenizer.render.cuda import cuda_status

torch.set_num_threads(1)


def good(B=2, M=3, C=4):
    return dict(
        means=torch.zeros(B, M, 2),
        scales=torch.full((B, M, 2), 0.2),
        rotations=torch.zeros(B, M),
        features=torch.ones(B, M, C),
        height=5,
        width=6,
        opacities=torch.ones(B, M),
    )


def call(**kw):
    return splat(**kw)


def test_good_input_renders():
    assert call(**good()).shape == (2, 4, 5, 6)


@pytest.mark.parametrize(
    "name,value,needle",
    [
        ("means", torch.zeros(2, 3), "means"),  # wrong rank
        ("means", torch.zeros(2, 3, 3), "means"),  # wrong last dim
        ("scales", torch.zeros(2, 3), "scales"),
        ("rotations", torch.zeros(2, 3, 1), "rotations"),
        ("features", torch.zeros(2, 3), "features"),  # rank 2
        ("features", torch.zeros(2, 3, 0), "channel"),  # C = 0
        ("opacities", torch.zeros(2), "opacities"),
        ("means", torch.zeros(3, 3, 2), "means"),  # mismatched batch
        ("scales", torch.zeros(2, 4, 2), "scales"),  # mismatched Gaussian count
        ("rotations", torch.zeros(1, 3), "rotations"),
        ("opacities", torch.zeros(2, 5), "opacities"),
        ("means", torch.zeros(2, 3, 2, dtype=torch.float64), "dtype"),  # mismatched dtype
        ("features", torch.ones(2, 3, 4, dtype=torch.int64), "features"),  # not floating
        ("means", [[0.0, 0.0]], "means"),  # not a tensor
        ("height", 0, "height"),
        ("width", -3, "width"),
        ("height", 4.0, "height"),
        ("width", True, "width"),
    ],
)
def test_bad_argument_raises_value_error_naming_it(name, value, needle):
    kw = good()
    kw[name] = value
    with pytest.raises(ValueError, match=needle):
        call(**kw)


def test_mismatched_devices_raise():
    kw = good()
    kw["means"] = torch.zeros(2, 3, 2, device="meta")
    with pytest.raises(ValueError, match="device"):
        call(**kw)


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="backend"):
        call(**good(), backend="triton")


def test_cuda_backend_on_cpu_tensors_says_why():
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        call(**good(), backend="cuda")


def test_cuda_status_reports_reason():
    st = cuda_status("cpu")
    assert not st.available and "cpu" in st.reason
    st = cuda_status()
    if not torch.cuda.is_available():
        assert not st.available and "is_available" in st.reason
    assert isinstance(st.reason, str) and st.reason


def test_cuda_backend_without_gpu_is_clear(monkeypatch):
    # Simulate CUDA tensors on a machine without a usable toolkit: the error carries cuda_status's reason.
    from gaussiantoken.tokenizer.render import cuda as cuda_mod

    monkeypatch.setattr(cuda_mod, "cuda_status", lambda device=None: cuda_mod.CudaStatus(False, "no CUDA toolkit found"))
    monkeypatch.setattr(cuda_mod, "_READY", False)  # a GPU test earlier in the session may have set it

    class FakeCuda(torch.Tensor):
        @property
        def is_cuda(self):
            return True

    kw = good()
    f = kw["features"].as_subclass(FakeCuda)
    with pytest.raises(RuntimeError, match="no CUDA toolkit found"):
        cuda_mod.splat_cuda(kw["means"], kw["scales"], kw["rotations"], f, 5, 6, kw["opacities"])


def test_bad_tile_raises():
    from gaussiantoken.tokenizer.render import cuda as cuda_mod

    class FakeCuda(torch.Tensor):
        @property
        def is_cuda(self):
            return True

    kw = good()
    with pytest.raises(ValueError, match="tile"):
        cuda_mod.splat_cuda(kw["means"], kw["scales"], kw["rotations"], kw["features"].as_subclass(FakeCuda), 5, 6, tile=(5, 5))


def test_build_stale_lock_is_removed(tmp_path):
    import os
    import time

    from gaussiantoken.tokenizer.render.build import build_key, remove_stale_lock

    lock = tmp_path / "lock"
    lock.write_text("")
    assert not remove_stale_lock(tmp_path, max_age_minutes=10)  # fresh: a live build, keep waiting
    assert lock.exists()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    assert remove_stale_lock(tmp_path, max_age_minutes=10)
    assert not lock.exists()
    assert build_key("9.0+PTX") != build_key("8.0;9.0+PTX")
    assert build_key("9.0+PTX") == build_key("9.0+PTX")
