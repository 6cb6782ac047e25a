// Launchers of the splatting kernels (splat_kernels.cu), called by the torch binding (splat_ext.cpp).
// Plain C++ with raw float32 pointers so the kernels compile without torch headers.
// All tensors are contiguous float32 on one device:
//   means [B, M, 2], scales [B, M, 2], rotations [B, M], features [B, M, C], opacities [B, M],
//   out / grad_out [B, C, H, W]; gradients have the shapes of their inputs.
#pragma once
#include <cuda_runtime.h>

namespace gaussiantoken {

// Forward: one launch over (tile, image, channel-pass); tile_w * tile_h threads per block
// (a multiple of 32, at most 1024). Returns the launch error (no host synchronisation).
cudaError_t launch_splat_forward(const float* means, const float* scales, const float* rotations,
                                 const float* features, const float* opacities, float* out, int B, int M,
                                 int C, int H, int W, int tile_w, int tile_h, cudaStream_t stream);

// Backward, Gaussian variant (GAUSSIANTOKEN_SPLAT_BWD=gaussian): one launch over (Gaussian group, image, channel-pass), plus a tiny epilogue that sums the
// channel passes in fixed order when C needs more than one pass. `partial` must hold
// backward_partial_floats(B, M, C) floats (may be null when that is 0).
long long backward_partial_floats(int B, int M, int C);
cudaError_t launch_splat_backward(const float* grad_out, const float* means, const float* scales,
                                  const float* rotations, const float* features, const float* opacities,
                                  float* grad_means, float* grad_scales, float* grad_rotations,
                                  float* grad_features, float* grad_opacities, float* partial, int B, int M,
                                  int C, int H, int W, cudaStream_t stream);

// Tile backward (the default variant), three steps on the stream, no float atomics:
//  1. launch_splat_backward_count: per Gaussian, its parameters and culling box into `prep`
//     (backward_prep_bytes(B, M) bytes) and counts[b*M + g] = number of 16x16 tiles its box meets;
//  2. the caller forms slot_end = inclusive cumsum(counts) (int64) and a workspace `ws` of at least
//     slot_end[B*M-1] * backward_tile_slot_floats(C) floats (null when that is 0; any upper bound,
//     such as B*M*tiles slots, avoids reading the count back to the host);
//  3. launch_splat_backward_tile: per-(image, tile) partial sums into ws, then a fixed-order reduce.
constexpr int kBackwardTile = 16;  // backward tiles are kBackwardTile x kBackwardTile pixels
long long backward_prep_bytes(int B, int M);
int backward_tile_slot_floats(int C);
cudaError_t launch_splat_backward_count(const float* means, const float* scales, const float* rotations,
                                        const float* opacities, long long* counts, void* prep, int B, int M, int H,
                                        int W, cudaStream_t stream);
cudaError_t launch_splat_backward_tile(const float* grad_out, const float* scales, const float* rotations,
                                       const float* features, const void* prep, const long long* slot_end,
                                       float* ws, float* grad_means, float* grad_scales, float* grad_rotations,
                                       float* grad_features, float* grad_opacities, int B, int M, int C, int H,
                                       int W, cudaStream_t stream);

}  // namespace gaussiantoken
