// Torch binding of the splatting kernels: argument checks, output allocation on the current stream.
// Exposed to Python as `forward` and `backward` (wrapped as torch.library custom ops in cuda.py).
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <vector>

#include "splat.h"

namespace {

void check_input(const at::Tensor& t, const char* name, const at::Tensor& ref) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32 (the wrapper casts)");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == ref.device(), name, " must be on the features' device");
}

void check_all(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
               const at::Tensor& features, const at::Tensor& opacities) {
  check_input(means, "means", features);
  check_input(scales, "scales", features);
  check_input(rotations, "rotations", features);
  check_input(features, "features", features);
  check_input(opacities, "opacities", features);
  TORCH_CHECK(features.dim() == 3, "features must be [B, M, C]");
  const auto B = features.size(0), M = features.size(1);
  TORCH_CHECK(means.sizes() == at::IntArrayRef({B, M, 2}), "means must be [B, M, 2]");
  TORCH_CHECK(scales.sizes() == at::IntArrayRef({B, M, 2}), "scales must be [B, M, 2]");
  TORCH_CHECK(rotations.sizes() == at::IntArrayRef({B, M}), "rotations must be [B, M]");
  TORCH_CHECK(opacities.sizes() == at::IntArrayRef({B, M}), "opacities must be [B, M]");
  TORCH_CHECK(B <= 65535, "batch size must be <= 65535 (grid dimension y)");
}

at::Tensor splat_forward(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
                         const at::Tensor& features, const at::Tensor& opacities, int64_t height, int64_t width,
                         int64_t tile_w, int64_t tile_h) {
  check_all(means, scales, rotations, features, opacities);
  TORCH_CHECK(height > 0 && width > 0, "height and width must be positive");
  TORCH_CHECK(tile_w > 0 && tile_h > 0 && (tile_w * tile_h) % 32 == 0 && tile_w * tile_h <= 1024,
              "tile_w * tile_h must be a multiple of 32 and at most 1024");
  const c10::cuda::CUDAGuard guard(features.device());
  const int B = features.size(0), M = features.size(1), C = features.size(2);
  auto out = (M == 0) ? at::zeros({B, C, height, width}, features.options())
                      : at::empty({B, C, height, width}, features.options());
  const cudaError_t err = gaussiantoken::launch_splat_forward(
      means.data_ptr<float>(), scales.data_ptr<float>(), rotations.data_ptr<float>(), features.data_ptr<float>(),
      opacities.data_ptr<float>(), out.data_ptr<float>(), B, M, C, (int)height, (int)width, (int)tile_w,
      (int)tile_h, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "splat forward launch failed: ", cudaGetErrorString(err));
  return out;
}

// variant 0: warp per Gaussian (re-reads dL/dout per overlapping Gaussian); 1: tile partial sums.
std::vector<at::Tensor> splat_backward(const at::Tensor& grad_out, const at::Tensor& means,
                                       const at::Tensor& scales, const at::Tensor& rotations,
                                       const at::Tensor& features, const at::Tensor& opacities, int64_t height,
                                       int64_t width, int64_t variant) {
  check_all(means, scales, rotations, features, opacities);
  check_input(grad_out, "grad_out", features);
  TORCH_CHECK(variant == 0 || variant == 1, "backward variant must be 0 (gaussian) or 1 (tile), got ", variant);
  const int B = features.size(0), M = features.size(1), C = features.size(2);
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({B, C, height, width}), "grad_out must be [B, C, H, W]");
  const c10::cuda::CUDAGuard guard(features.device());
  auto grad_means = at::empty_like(means);
  auto grad_scales = at::empty_like(scales);
  auto grad_rotations = at::empty_like(rotations);
  auto grad_features = at::empty_like(features);
  auto grad_opacities = at::empty_like(opacities);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaError_t err = cudaSuccess;
  if (variant == 1) {
    const int64_t BM = (int64_t)B * M;
    if (BM > 0) {
      auto counts = at::empty({BM}, features.options().dtype(at::kLong));
      auto prep = at::empty({gaussiantoken::backward_prep_bytes(B, M)}, features.options().dtype(at::kByte));
      err = gaussiantoken::launch_splat_backward_count(means.data_ptr<float>(), scales.data_ptr<float>(),
                                                       rotations.data_ptr<float>(), opacities.data_ptr<float>(),
                                                       reinterpret_cast<long long*>(counts.data_ptr<int64_t>()), prep.data_ptr(), B, M,
                                                       (int)height, (int)width, stream);
      TORCH_CHECK(err == cudaSuccess, "splat backward (count) launch failed: ", cudaGetErrorString(err));
      auto slot_end = counts.cumsum(0);  // int64, inclusive
      // Workspace: the upper bound (every Gaussian on every tile) when that is at most 64 MiB, so no
      // host synchronisation is needed; otherwise the exact count, read back (one host sync).
      const int64_t slot_floats = gaussiantoken::backward_tile_slot_floats(C);
      constexpr int64_t T = gaussiantoken::kBackwardTile;
      const int64_t tiles = ((height + T - 1) / T) * ((width + T - 1) / T);
      const int64_t slots =
          (BM * tiles * slot_floats <= ((int64_t)16 << 20)) ? BM * tiles : slot_end[BM - 1].item<int64_t>();
      at::Tensor ws;
      if (slots > 0) ws = at::empty({slots * slot_floats}, features.options());
      err = gaussiantoken::launch_splat_backward_tile(
          grad_out.data_ptr<float>(), scales.data_ptr<float>(), rotations.data_ptr<float>(),
          features.data_ptr<float>(), prep.data_ptr(), reinterpret_cast<const long long*>(slot_end.data_ptr<int64_t>()),
          slots > 0 ? ws.data_ptr<float>() : nullptr, grad_means.data_ptr<float>(), grad_scales.data_ptr<float>(),
          grad_rotations.data_ptr<float>(), grad_features.data_ptr<float>(), grad_opacities.data_ptr<float>(), B,
          M, C, (int)height, (int)width, stream);
    }
  } else {
    const long long nparts = gaussiantoken::backward_partial_floats(B, M, C);
    at::Tensor partial;
    if (nparts > 0) partial = at::empty({nparts}, features.options());
    err = gaussiantoken::launch_splat_backward(
        grad_out.data_ptr<float>(), means.data_ptr<float>(), scales.data_ptr<float>(), rotations.data_ptr<float>(),
        features.data_ptr<float>(), opacities.data_ptr<float>(), grad_means.data_ptr<float>(),
        grad_scales.data_ptr<float>(), grad_rotations.data_ptr<float>(), grad_features.data_ptr<float>(),
        grad_opacities.data_ptr<float>(), nparts > 0 ? partial.data_ptr<float>() : nullptr, B, M, C, (int)height,
        (int)width, stream);
  }
  TORCH_CHECK(err == cudaSuccess, "splat backward launch failed: ", cudaGetErrorString(err));
  return {grad_means, grad_scales, grad_rotations, grad_features, grad_opacities};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gaussiantoken splatting kernels (forward/backward, float32, CUDA)";
  m.def("forward", &splat_forward, "splat forward -> out [B, C, H, W]");
  m.def("backward", &splat_backward,
        "splat backward(grad_out, means, scales, rotations, features, opacities, height, width, variant) -> "
        "(d_means, d_scales, d_rotations, d_features, d_opacities); variant 0 = gaussian, 1 = tile");
}
