// CUDA kernels of the splatting renderer (DESIGN.md section 3), forward and backward.
//
// Contract (the same as tokenizer/render/reference.py): pixel (i, j) of an H x W grid has centre
// x = (2j+1)/W - 1, y = (2i+1)/H - 1; with d = p - mu, u = (cos d_x + sin d_y) / s_x,
// v = (cos d_y - sin d_x) / s_y, alpha = o exp(-(u^2 + v^2) / 2), zeroed where alpha < 1/255;
// out[b, :, i, j] = sum_g alpha_g f_g (a plain sum, in Gaussian index order).
//
// Forward: one block per (tile, image, channel pass); one thread per pixel. The block walks its
// image's M Gaussians in chunks of blockDim, culls each chunk against the tile with the exact
// opacity-aware box (half-extent sqrt(2 ln(255 o)) * sigma_axis, slightly widened for rounding),
// compacts the survivors in index order (ballot + warp prefix sums) into shared memory, stages
// their features in shared memory in batches, and every thread accumulates its pixel's channels
// in fp32 registers. The per-pixel sum order is the Gaussian index order whatever the tiling, and
// culled Gaussians have alpha = 0 exactly, so the output is bitwise independent of the tile size.
//
// Backward, two deterministic variants (no float atomics; chosen by the binding, see cuda.py):
// - tile (opt-in, GAUSSIANTOKEN_SPLAT_BWD=tile; compile-checked and CPU-emulated, not yet run on a GPU):
//   a prep kernel stores every Gaussian's parameters and box and counts the 16x16
//   tiles its box meets; the host forms slot offsets (inclusive cumsum). One block per (tile, image,
//   channel pass) stages the tile's dL/dout in shared memory once, culls like the forward (index
//   order), and gives each culled Gaussian to one warp, which walks box ∩ tile, sums per lane, and
//   adds the 32 lanes in fixed order through a shared-memory transpose into the Gaussian's slot for
//   that tile. A reduce kernel then adds each Gaussian's slots in row-major tile order (and its
//   channel passes' geometric sums in pass order) and applies the closing formulas below.
//   dL/dout is read from global memory once per channel pass instead of once per overlapping Gaussian.
// - gaussian (default; verified on an H200): one warp per (image, Gaussian, channel pass) walks the pixels of the Gaussian's exact
//   box, reads dL/dout there, and accumulates dL/df and six geometric sums in registers, then reduces
//   them over the warp with a fixed xor butterfly.
// The geometric gradient is the exact one (the symmetric-conic form of DESIGN.md section 3,
// written in the Gaussian's own axes): with w = alpha * <f, G_p>, u, v as above,
//   dL/dmu_x = sum w (u cos/s_x - v sin/s_y),  dL/dmu_y = sum w (u sin/s_x + v cos/s_y),
//   dL/ds_x = sum w u^2 / s_x,  dL/ds_y = sum w v^2 / s_y,
//   dL/dtheta = -sum w u v (s_y/s_x - s_x/s_y),  dL/do = sum exp(-(u^2+v^2)/2) <f, G_p>.
// When C needs several channel passes, each pass writes its partial geometric sums and a tiny
// epilogue adds the passes in fixed order (w is linear in <f, G_p>, so the passes add up).
#include "splat.h"

#include <cstdint>

namespace gaussiantoken {
namespace {

constexpr float kAlphaCutoff = 1.0f / 255.0f;
constexpr int kFeatSmemFloats = 4096;  // staged features per batch (16 KiB)
constexpr int kBwdWarps = 8;           // Gaussians per backward block

struct alignas(16) Gauss {
  float mx, my;  // mean (normalized coordinates)
  float a, bq;   // u = a*dx + bq*dy   (a = cos/s_x, bq = sin/s_x)
  float cq, dq;  // v = cq*dy - dq*dx  (cq = cos/s_y, dq = sin/s_y)
  float o, pad;  // opacity
};

struct Box {
  int x0, x1, y0, y1;  // inclusive pixel ranges, clipped to the image; empty when x0 > x1
};

// Pixel index range [lo, hi] whose centres (2k+1)/n - 1 lie within [c - e, c + e] (widened by
// 1e-3 px for rounding), clipped to [0, n-1].
__device__ __forceinline__ void axis_range(float c, float e, int n, int& lo, int& hi) {
  float flo = ((c - e + 1.0f) * n - 1.0f) * 0.5f - 1e-3f;
  float fhi = ((c + e + 1.0f) * n - 1.0f) * 0.5f + 1e-3f;
  flo = fminf(fmaxf(flo, -1.0f), (float)n);  // also maps NaN to -1 / n
  fhi = fminf(fmaxf(fhi, -1.0f), (float)n);
  lo = max(0, (int)ceilf(flo));
  hi = min(n - 1, (int)floorf(fhi));
}

// Loads Gaussian `idx` (= b*M + g) and its culling box. Returns false when it can never pass the
// cutoff (o < 1/255, or non-finite parameters), in which case the box is empty.
__device__ __forceinline__ bool load_gauss(const float* __restrict__ means, const float* __restrict__ scales,
                                           const float* __restrict__ rotations,
                                           const float* __restrict__ opacities, long long idx, int H, int W,
                                           Gauss& G, Box& box) {
  const float mx = means[2 * idx], my = means[2 * idx + 1];
  const float sx = scales[2 * idx], sy = scales[2 * idx + 1];
  const float o = opacities[idx];
  float sn, cs;
  sincosf(rotations[idx], &sn, &cs);
  const float isx = 1.0f / sx, isy = 1.0f / sy;
  G.mx = mx;
  G.my = my;
  G.a = cs * isx;
  G.bq = sn * isx;
  G.cq = cs * isy;
  G.dq = sn * isy;
  G.o = o;
  G.pad = 0.0f;
  box.x0 = 1;
  box.x1 = 0;
  box.y0 = 1;
  box.y1 = 0;
  if (!(o >= kAlphaCutoff)) return false;  // alpha <= o < cutoff everywhere (or NaN)
  // Cutoff radius in Mahalanobis units, widened so float rounding of alpha never escapes the box.
  const float r2 = 2.0f * logf(fmaxf(o * 255.0f, 1.0f));
  const float r = sqrtf(r2 + 1e-4f) * 1.001f;
  // Exact axis extents of the cutoff ellipse: r * sqrt(Sigma_xx), r * sqrt(Sigma_yy).
  const float sig_x = sqrtf(cs * cs * sx * sx + sn * sn * sy * sy);
  const float sig_y = sqrtf(sn * sn * sx * sx + cs * cs * sy * sy);
  axis_range(mx, r * sig_x, W, box.x0, box.x1);
  axis_range(my, r * sig_y, H, box.y0, box.y1);
  return box.x0 <= box.x1 && box.y0 <= box.y1;
}

__device__ __forceinline__ float pixel_coord(int k, int n) { return (float)(2 * k + 1) / (float)n - 1.0f; }

// alpha before the cutoff test; also returns u, v and e = exp(-(u^2+v^2)/2).
__device__ __forceinline__ float eval_alpha(const Gauss& G, float fx, float fy, float& u, float& v, float& e) {
  const float dx = fx - G.mx, dy = fy - G.my;
  u = G.a * dx + G.bq * dy;
  v = G.cq * dy - G.dq * dx;
  e = expf(-0.5f * (u * u + v * v));
  return G.o * e;
}

// The six per-Gaussian sums both backward variants accumulate for one pixel, with ed = e <f, G_p>
// (e = exp(-m^2/2)) and w = o ed: S = (sum ed, sum w u, sum w v, sum w u^2, sum w v^2, sum w u v); the
// closing formulas (finish_geometry) turn them into the mean, scale, rotation and opacity gradients.
__device__ __forceinline__ void accumulate_geometry(float* S, float ed, float o, float u, float v) {
  const float w = o * ed;
  S[0] += ed;
  S[1] = fmaf(w, u, S[1]);
  S[2] = fmaf(w, v, S[2]);
  S[3] = fmaf(w * u, u, S[3]);
  S[4] = fmaf(w * v, v, S[4]);
  S[5] = fmaf(w * u, v, S[5]);
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------
template <int CB>
__global__ void splat_forward_kernel(const float* __restrict__ means, const float* __restrict__ scales,
                                     const float* __restrict__ rotations, const float* __restrict__ features,
                                     const float* __restrict__ opacities, float* __restrict__ out, int M, int C,
                                     int H, int W, int tile_w, int tile_h, int tiles_x) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int nt = blockDim.x;   // tile_w * tile_h, a multiple of 32
  const int nwarps = nt >> 5;  // <= 32
  const int ks = min(nt, kFeatSmemFloats / CB);  // Gaussians per staged feature batch
  Gauss* gs = reinterpret_cast<Gauss*>(smem_raw);                      // [nt]
  float* feat_s = reinterpret_cast<float*>(gs + nt);                   // [ks, CB]
  int* ids = reinterpret_cast<int*>(feat_s + (size_t)ks * CB);         // [nt]
  int* wcount = ids + nt;                                              // [32]

  const int b = blockIdx.y;
  const int c0 = blockIdx.z * CB;
  const int tx0 = (blockIdx.x % tiles_x) * tile_w, ty0 = (blockIdx.x / tiles_x) * tile_h;
  const int tx1 = min(tx0 + tile_w, W) - 1, ty1 = min(ty0 + tile_h, H) - 1;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int px = tx0 + t % tile_w, py = ty0 + t / tile_w;
  const bool inside = px < W && py < H;
  const float fx = pixel_coord(px, W), fy = pixel_coord(py, H);
  const long long gbase = (long long)b * M;

  float acc[CB];
#pragma unroll
  for (int c = 0; c < CB; ++c) acc[c] = 0.0f;

  for (int base = 0; base < M; base += nt) {
    // 1. cull this chunk of Gaussians against the tile (one Gaussian per thread)
    const int g = base + t;
    Gauss G;
    Box box;
    bool hit = false;
    if (g < M && load_gauss(means, scales, rotations, opacities, gbase + g, H, W, G, box)) {
      hit = box.x0 <= tx1 && box.x1 >= tx0 && box.y0 <= ty1 && box.y1 >= ty0;
    }
    // 2. compact the survivors in index order
    const unsigned mask = __ballot_sync(0xffffffffu, hit);
    if (lane == 0) wcount[warp] = __popc(mask);
    __syncthreads();
    int off = 0, n = 0;
    for (int w = 0; w < nwarps; ++w) {
      const int cnt = wcount[w];
      off += (w < warp) ? cnt : 0;
      n += cnt;
    }
    if (hit) {
      const int pos = off + __popc(mask & ((1u << lane) - 1u));
      gs[pos] = G;
      ids[pos] = g;
    }
    __syncthreads();
    // 3. stage features in batches and accumulate
    for (int k0 = 0; k0 < n; k0 += ks) {
      const int kn = min(ks, n - k0);
      for (int i = t; i < kn * CB; i += nt) {
        const int k = i / CB, c = i - k * CB;
        feat_s[i] = (c0 + c < C) ? features[(gbase + ids[k0 + k]) * C + c0 + c] : 0.0f;
      }
      __syncthreads();
      if (inside) {
        for (int k = 0; k < kn; ++k) {
          const Gauss Gk = gs[k0 + k];
          float u, v, e;
          const float alpha = eval_alpha(Gk, fx, fy, u, v, e);
          if (alpha >= kAlphaCutoff) {
            const float* f = feat_s + k * CB;
#pragma unroll
            for (int c = 0; c < CB; ++c) acc[c] = fmaf(alpha, f[c], acc[c]);
          }
        }
      }
      __syncthreads();
    }
  }
  if (inside) {
    const long long plane = (long long)H * W;
    float* o = out + ((long long)b * C + c0) * plane + (long long)py * W + px;
#pragma unroll
    for (int c = 0; c < CB; ++c)
      if (c0 + c < C) o[c * plane] = acc[c];
  }
}

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;  // identical in every lane, same order every run
}

// Geometric gradients from the six sums S = (sum e<f,G>, sum w u, sum w v, sum w u^2, sum w v^2,
// sum w u v) of Gaussian idx.
__device__ __forceinline__ void finish_geometry(const float* S, const float* __restrict__ scales,
                                                const float* __restrict__ rotations, long long idx,
                                                float* __restrict__ grad_means, float* __restrict__ grad_scales,
                                                float* __restrict__ grad_rotations,
                                                float* __restrict__ grad_opacities) {
  const float sx = scales[2 * idx], sy = scales[2 * idx + 1];
  float sn, cs;
  sincosf(rotations[idx], &sn, &cs);
  const float isx = 1.0f / sx, isy = 1.0f / sy;
  grad_means[2 * idx] = S[1] * cs * isx - S[2] * sn * isy;
  grad_means[2 * idx + 1] = S[1] * sn * isx + S[2] * cs * isy;
  grad_scales[2 * idx] = S[3] * isx;
  grad_scales[2 * idx + 1] = S[4] * isy;
  grad_rotations[idx] = -S[5] * (sy * isx - sx * isy);
  grad_opacities[idx] = S[0];
}

template <int CB>
__global__ void splat_backward_kernel(const float* __restrict__ grad_out, const float* __restrict__ means,
                                      const float* __restrict__ scales, const float* __restrict__ rotations,
                                      const float* __restrict__ features, const float* __restrict__ opacities,
                                      float* __restrict__ grad_means, float* __restrict__ grad_scales,
                                      float* __restrict__ grad_rotations, float* __restrict__ grad_features,
                                      float* __restrict__ grad_opacities, float* __restrict__ partial, int B,
                                      int M, int C, int H, int W) {
  const int lane = threadIdx.x & 31;
  const int g = blockIdx.x * kBwdWarps + (threadIdx.x >> 5);
  if (g >= M) return;  // whole warps only; no block-level synchronisation below
  const int b = blockIdx.y;
  const int c0 = blockIdx.z * CB;
  const long long idx = (long long)b * M + g;

  Gauss G;
  Box box;
  load_gauss(means, scales, rotations, opacities, idx, H, W, G, box);  // empty box when never visible
  float f[CB], dF[CB];
#pragma unroll
  for (int c = 0; c < CB; ++c) {
    f[c] = (c0 + c < C) ? features[idx * C + c0 + c] : 0.0f;
    dF[c] = 0.0f;
  }
  float S[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};

  const int bw = box.x1 - box.x0 + 1;
  const int npx = (box.x0 <= box.x1 && box.y0 <= box.y1) ? bw * (box.y1 - box.y0 + 1) : 0;
  const long long plane = (long long)H * W;
  const float* gimg = grad_out + ((long long)b * C + c0) * plane;
  for (int i = lane; i < npx; i += 32) {
    const int py = box.y0 + i / bw, px = box.x0 + i % bw;
    float u, v, e;
    const float alpha = eval_alpha(G, pixel_coord(px, W), pixel_coord(py, H), u, v, e);
    if (alpha >= kAlphaCutoff) {
      const float* gp = gimg + (long long)py * W + px;
      float da = 0.0f;  // <f, G_p> over this pass's channels
#pragma unroll
      for (int c = 0; c < CB; ++c) {
        if (c0 + c < C) {
          const float gv = gp[c * plane];
          da = fmaf(f[c], gv, da);
          dF[c] = fmaf(alpha, gv, dF[c]);
        }
      }
      accumulate_geometry(S, e * da, G.o, u, v);
    }
  }
#pragma unroll
  for (int c = 0; c < CB; ++c) dF[c] = warp_sum(dF[c]);
#pragma unroll
  for (int k = 0; k < 6; ++k) S[k] = warp_sum(S[k]);
  if (lane != 0) return;
#pragma unroll
  for (int c = 0; c < CB; ++c)
    if (c0 + c < C) grad_features[idx * C + c0 + c] = dF[c];
  if (gridDim.z == 1) {
    finish_geometry(S, scales, rotations, idx, grad_means, grad_scales, grad_rotations, grad_opacities);
  } else {
    float* p = partial + ((long long)blockIdx.z * B * M + idx) * 6;
#pragma unroll
    for (int k = 0; k < 6; ++k) p[k] = S[k];
  }
}

// Sums the channel passes' geometric partials in fixed order and finishes the gradients.
__global__ void splat_backward_epilogue(const float* __restrict__ partial, int passes, long long BM,
                                        const float* __restrict__ scales, const float* __restrict__ rotations,
                                        float* __restrict__ grad_means, float* __restrict__ grad_scales,
                                        float* __restrict__ grad_rotations, float* __restrict__ grad_opacities) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= BM) return;
  float S[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (int z = 0; z < passes; ++z) {
    const float* p = partial + (z * BM + idx) * 6;
#pragma unroll
    for (int k = 0; k < 6; ++k) S[k] += p[k];
  }
  finish_geometry(S, scales, rotations, idx, grad_means, grad_scales, grad_rotations, grad_opacities);
}

// ---------------------------------------------------------------------------------------------
// Backward, tile variant (opt-in): per-(image, tile) partial sums, then a fixed-order reduce
// ---------------------------------------------------------------------------------------------
constexpr int kBwdTile = kBackwardTile;            // backward tiles are 16 x 16 pixels (splat.h)
constexpr int kBwdThreads = kBwdTile * kBwdTile;  // one thread per pixel when staging and culling
constexpr int kBwdTileWarps = kBwdThreads / 32;   // 8 warps, each takes one culled Gaussian at a time

// Number of backward tiles the (non-empty) box meets: its partial-sum slots, in row-major tile order.
__device__ __forceinline__ int box_tile_count(const Box& box) {
  return (box.x1 / kBwdTile - box.x0 / kBwdTile + 1) * (box.y1 / kBwdTile - box.y0 / kBwdTile + 1);
}

// Per Gaussian idx = b*M + g: its parameters and culling box, stored once (prep_g, prep_box) so the
// tile kernel's culling and the slot layout use the very same box (no recomputation that could round
// differently), and counts[idx] = the number of tiles the box meets (0 when never visible).
__global__ void splat_backward_count_kernel(const float* __restrict__ means, const float* __restrict__ scales,
                                            const float* __restrict__ rotations,
                                            const float* __restrict__ opacities, long long* __restrict__ counts,
                                            Gauss* __restrict__ prep_g, Box* __restrict__ prep_box, long long BM,
                                            int H, int W) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= BM) return;
  Gauss G;
  Box box;
  const bool visible = load_gauss(means, scales, rotations, opacities, idx, H, W, G, box);
  if (!visible) box = Box{1, 0, 1, 0};
  prep_g[idx] = G;
  prep_box[idx] = box;
  counts[idx] = visible ? box_tile_count(box) : 0;
}

// One block per (tile, image, channel pass), 256 threads. The block stages the tile's dL/dout for
// this pass in shared memory (read from global memory exactly once), culls the image's Gaussians
// against the tile exactly as the forward does (same box, index order), and hands each culled
// Gaussian to one warp. The warp walks the pixels of (box ∩ tile), recomputes alpha, and
// accumulates dL/df (this pass's channels) and the six geometric sums per lane; the lanes' values
// are then summed in fixed lane order through a per-warp shared-memory transpose and written to
// the Gaussian's slot for this tile in the workspace (slot = the tile's position in the row-major
// range of tiles its box meets, after the Gaussian's offset `slot_end[idx - 1]`). No atomics.
template <int CB>
__global__ void __launch_bounds__(kBwdThreads) splat_backward_tile_kernel(
    const float* __restrict__ grad_out, const float* __restrict__ features, const Gauss* __restrict__ prep_g,
    const Box* __restrict__ prep_box, const long long* __restrict__ slot_end, float* __restrict__ ws, int M,
    int C, int H, int W, int tiles_x, int SW) {
  constexpr int NV = CB + 6;                          // values per (Gaussian, tile): dL/df[CB], S[6]
  constexpr int RS = (NV % 2 == 0) ? NV + 1 : NV;     // odd row strides: conflict-free transposes
  constexpr int GS = (CB % 2 == 0) ? CB + 1 : CB;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Gauss* gs = reinterpret_cast<Gauss*>(smem_raw);                       // [256] culled Gaussians
  Box* boxes = reinterpret_cast<Box*>(gs + kBwdThreads);                // [256] their boxes
  float* Gt = reinterpret_cast<float*>(boxes + kBwdThreads);            // [256 pixels, GS] dL/dout
  float* red = Gt + kBwdThreads * GS;                                   // [8 warps, 32 lanes, RS]
  int* ids = reinterpret_cast<int*>(red + kBwdTileWarps * 32 * RS);     // [256] Gaussian indices
  int* wcount = ids + kBwdThreads;                                      // [8]
  float* cx = reinterpret_cast<float*>(wcount + kBwdTileWarps);         // [16] pixel-centre x of the columns
  float* cy = cx + kBwdTile;                                            // [16] pixel-centre y of the rows

  const int b = blockIdx.y, z = blockIdx.z, c0 = z * CB;
  const int tile_x = blockIdx.x % tiles_x, tile_y = blockIdx.x / tiles_x;
  const int tx0 = tile_x * kBwdTile, ty0 = tile_y * kBwdTile;
  const int tx1 = min(tx0 + kBwdTile, W) - 1, ty1 = min(ty0 + kBwdTile, H) - 1;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const long long gbase = (long long)b * M;
  const long long plane = (long long)H * W;

  // 1. stage dL/dout of this tile and pass: Gt[local pixel][c], zero outside the image / channels
  {
    const int px = tx0 + (t % kBwdTile), py = ty0 + (t / kBwdTile);
    float* row = Gt + t * GS;
    if (px < W && py < H) {
      const float* src = grad_out + ((long long)b * C + c0) * plane + (long long)py * W + px;
#pragma unroll
      for (int c = 0; c < CB; ++c) row[c] = (c0 + c < C) ? src[c * plane] : 0.0f;
    } else {
#pragma unroll
      for (int c = 0; c < CB; ++c) row[c] = 0.0f;
    }
  }
  if (t < kBwdTile) cx[t] = pixel_coord(tx0 + t, W);  // the forward's exact pixel coordinates
  else if (t < 2 * kBwdTile) cy[t - kBwdTile] = pixel_coord(ty0 + t - kBwdTile, H);
  float* myred = red + warp * 32 * RS;

  for (int base = 0; base < M; base += kBwdThreads) {
    // 2. cull a chunk of Gaussians against the tile, compact the survivors in index order
    const int g = base + t;
    Gauss G;
    Box box;
    bool hit = false;
    if (g < M) {
      box = prep_box[gbase + g];  // empty (x0 > x1) when never visible
      hit = box.x0 <= box.x1 && box.y0 <= box.y1 && box.x0 <= tx1 && box.x1 >= tx0 && box.y0 <= ty1 &&
            box.y1 >= ty0;
      if (hit) G = prep_g[gbase + g];
    }
    const unsigned mask = __ballot_sync(0xffffffffu, hit);
    if (lane == 0) wcount[warp] = __popc(mask);
    __syncthreads();  // (the first time, also publishes the staged Gt)
    int off = 0, n = 0;
    for (int w = 0; w < kBwdTileWarps; ++w) {
      const int cnt = wcount[w];
      off += (w < warp) ? cnt : 0;
      n += cnt;
    }
    if (hit) {
      const int pos = off + __popc(mask & ((1u << lane) - 1u));
      gs[pos] = G;
      boxes[pos] = box;
      ids[pos] = g;
    }
    __syncthreads();
    // 3. one warp per culled Gaussian: partial sums over (box ∩ tile)
    for (int k = warp; k < n; k += kBwdTileWarps) {
      const Gauss Gk = gs[k];
      const Box bx = boxes[k];
      const long long idx = gbase + ids[k];
      const int rx0 = max(bx.x0, tx0), rx1 = min(bx.x1, tx1), ry0 = max(bx.y0, ty0), ry1 = min(bx.y1, ty1);
      const int rw = rx1 - rx0 + 1;
      const int npx = rw * (ry1 - ry0 + 1);  // >= 1: the box meets the tile
      float f[CB], dF[CB];
#pragma unroll
      for (int c = 0; c < CB; ++c) {
        f[c] = (c0 + c < C) ? __ldg(features + idx * C + c0 + c) : 0.0f;
        dF[c] = 0.0f;
      }
      float S[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
      // lane's pixel (lx, ly) in the rw-wide rectangle, advanced by 32 pixels per step without divisions
      const int step_y = 32 / rw, step_x = 32 % rw;
      int ly = lane / rw, lx = lane % rw;
      for (int i = lane; i < npx; i += 32) {
        const int px = rx0 + lx - tx0, py = ry0 + ly - ty0;  // tile-local
        lx += step_x;
        ly += step_y;
        if (lx >= rw) {
          lx -= rw;
          ++ly;
        }
        float u, v, e;
        const float alpha = eval_alpha(Gk, cx[px], cy[py], u, v, e);
        if (alpha >= kAlphaCutoff) {
          const float* row = Gt + (py * kBwdTile + px) * GS;
          float da = 0.0f;  // <f, G_p> over this pass's channels
#pragma unroll
          for (int c = 0; c < CB; ++c) {
            const float gv = row[c];
            da = fmaf(f[c], gv, da);
            dF[c] = fmaf(alpha, gv, dF[c]);
          }
          accumulate_geometry(S, e * da, Gk.o, u, v);
        }
      }
      // 4. sum the 32 lanes in fixed order (transpose through shared memory), write the slot
#pragma unroll
      for (int c = 0; c < CB; ++c) myred[lane * RS + c] = dF[c];
#pragma unroll
      for (int q = 0; q < 6; ++q) myred[lane * RS + CB + q] = S[q];
      __syncwarp();
      const int ntx = bx.x1 / kBwdTile - bx.x0 / kBwdTile + 1;
      const long long slot = (idx == 0 ? 0LL : slot_end[idx - 1]) +
                             (long long)(tile_y - bx.y0 / kBwdTile) * ntx + (tile_x - bx.x0 / kBwdTile);
      float* dst = ws + slot * SW;
      for (int vv = lane; vv < NV; vv += 32) {
        float sum = 0.0f;
#pragma unroll 8
        for (int r = 0; r < 32; ++r) sum += myred[r * RS + vv];
        if (vv < CB) {
          if (c0 + vv < C) dst[c0 + vv] = sum;
        } else {
          dst[C + 6 * z + (vv - CB)] = sum;
        }
      }
      __syncwarp();  // the buffer is reused by this warp's next Gaussian
    }
    __syncthreads();  // gs / boxes / ids / wcount are rewritten by the next chunk
  }
}

// One warp per Gaussian: sums its slots (tiles in row-major order, each slot's passes in order)
// and finishes the gradients. Lanes own dL/df channels; lane 0 sums the geometric partials.
__global__ void splat_backward_tile_reduce(const float* __restrict__ ws, const long long* __restrict__ slot_end,
                                           long long BM, int C, int passes, int SW,
                                           const float* __restrict__ scales, const float* __restrict__ rotations,
                                           float* __restrict__ grad_means, float* __restrict__ grad_scales,
                                           float* __restrict__ grad_rotations, float* __restrict__ grad_features,
                                           float* __restrict__ grad_opacities) {
  const int lane = threadIdx.x & 31;
  const long long idx = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (idx >= BM) return;  // whole warps
  const long long s0 = idx == 0 ? 0LL : slot_end[idx - 1], s1 = slot_end[idx];
  for (int c = lane; c < C; c += 32) {
    float sum = 0.0f;
    for (long long q = s0; q < s1; ++q) sum += ws[q * SW + c];
    grad_features[idx * C + c] = sum;
  }
  if (lane != 0) return;
  float S[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (long long q = s0; q < s1; ++q) {
    const float* p = ws + q * SW + C;
    for (int zz = 0; zz < passes; ++zz)
#pragma unroll
      for (int k = 0; k < 6; ++k) S[k] += p[6 * zz + k];
  }
  finish_geometry(S, scales, rotations, idx, grad_means, grad_scales, grad_rotations, grad_opacities);
}

// Channels per pass: the smallest compiled width >= C, or the widest with several passes.
int forward_block_channels(int C) {
  const int widths[] = {1, 2, 4, 8, 16, 32, 64};
  for (int w : widths)
    if (C <= w) return w;
  return 64;
}
int backward_block_channels(int C) {
  const int widths[] = {1, 2, 4, 8, 16, 32};
  for (int w : widths)
    if (C <= w) return w;
  return 32;
}

template <int CB>
cudaError_t forward_impl(const float* means, const float* scales, const float* rotations, const float* features,
                         const float* opacities, float* out, int B, int M, int C, int H, int W, int tile_w,
                         int tile_h, cudaStream_t stream) {
  const int nt = tile_w * tile_h;
  const int ks = nt < kFeatSmemFloats / CB ? nt : kFeatSmemFloats / CB;
  const size_t smem = (size_t)nt * sizeof(Gauss) + (size_t)ks * CB * sizeof(float) + (size_t)(nt + 32) * sizeof(int);
  const int tiles_x = (W + tile_w - 1) / tile_w, tiles_y = (H + tile_h - 1) / tile_h;
  const dim3 grid(tiles_x * tiles_y, B, (C + CB - 1) / CB);
  if (smem > 48 * 1024) {
    cudaError_t err = cudaFuncSetAttribute(splat_forward_kernel<CB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)smem);
    if (err != cudaSuccess) return err;
  }
  splat_forward_kernel<CB><<<grid, nt, smem, stream>>>(means, scales, rotations, features, opacities, out, M, C, H,
                                                       W, tile_w, tile_h, tiles_x);
  return cudaGetLastError();
}

template <int CB>
cudaError_t backward_impl(const float* grad_out, const float* means, const float* scales, const float* rotations,
                          const float* features, const float* opacities, float* grad_means, float* grad_scales,
                          float* grad_rotations, float* grad_features, float* grad_opacities, float* partial,
                          int B, int M, int C, int H, int W, cudaStream_t stream) {
  const int passes = (C + CB - 1) / CB;
  const dim3 grid((M + kBwdWarps - 1) / kBwdWarps, B, passes);
  splat_backward_kernel<CB><<<grid, kBwdWarps * 32, 0, stream>>>(grad_out, means, scales, rotations, features,
                                                                 opacities, grad_means, grad_scales, grad_rotations,
                                                                 grad_features, grad_opacities, partial, B, M, C,
                                                                 H, W);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || passes == 1) return err;
  const long long BM = (long long)B * M;
  splat_backward_epilogue<<<(unsigned)((BM + 255) / 256), 256, 0, stream>>>(
      partial, passes, BM, scales, rotations, grad_means, grad_scales, grad_rotations, grad_opacities);
  return cudaGetLastError();
}

template <int CB>
cudaError_t backward_tile_impl(const float* grad_out, const float* scales, const float* rotations,
                               const float* features, const Gauss* prep_g, const Box* prep_box,
                               const long long* slot_end, float* ws, float* grad_means, float* grad_scales,
                               float* grad_rotations, float* grad_features, float* grad_opacities, int B, int M,
                               int C, int H, int W, cudaStream_t stream) {
  constexpr int NV = CB + 6;
  constexpr int RS = (NV % 2 == 0) ? NV + 1 : NV;
  constexpr int GS = (CB % 2 == 0) ? CB + 1 : CB;
  const size_t smem = (size_t)kBwdThreads * (sizeof(Gauss) + sizeof(Box) + GS * sizeof(float) + sizeof(int)) +
                      (size_t)kBwdTileWarps * 32 * RS * sizeof(float) + (size_t)kBwdTileWarps * sizeof(int) +
                      (size_t)2 * kBwdTile * sizeof(float);
  const int passes = (C + CB - 1) / CB;
  const int SW = C + 6 * passes;
  const int tiles_x = (W + kBwdTile - 1) / kBwdTile, tiles_y = (H + kBwdTile - 1) / kBwdTile;
  if (ws != nullptr) {  // null: no Gaussian is visible anywhere, every gradient is a zero sum
    if (smem > 48 * 1024) {
      cudaError_t err = cudaFuncSetAttribute(splat_backward_tile_kernel<CB>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
      if (err != cudaSuccess) return err;
    }
    const dim3 grid(tiles_x * tiles_y, B, passes);
    splat_backward_tile_kernel<CB><<<grid, kBwdThreads, smem, stream>>>(
        grad_out, features, prep_g, prep_box, slot_end, ws, M, C, H, W, tiles_x, SW);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const long long BM = (long long)B * M;
  constexpr int kWarpsPerBlock = 8;
  splat_backward_tile_reduce<<<(unsigned)((BM + kWarpsPerBlock - 1) / kWarpsPerBlock), kWarpsPerBlock * 32, 0,
                               stream>>>(ws, slot_end, BM, C, passes, SW, scales, rotations, grad_means,
                                         grad_scales, grad_rotations, grad_features, grad_opacities);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_splat_forward(const float* means, const float* scales, const float* rotations,
                                 const float* features, const float* opacities, float* out, int B, int M, int C,
                                 int H, int W, int tile_w, int tile_h, cudaStream_t stream) {
  if (B == 0 || M == 0 || H == 0 || W == 0) return cudaSuccess;  // the caller zero-fills
#define GT_FWD(CB) \
  case CB:         \
    return forward_impl<CB>(means, scales, rotations, features, opacities, out, B, M, C, H, W, tile_w, tile_h, stream)
  switch (forward_block_channels(C)) {
    GT_FWD(1);
    GT_FWD(2);
    GT_FWD(4);
    GT_FWD(8);
    GT_FWD(16);
    GT_FWD(32);
    GT_FWD(64);
  }
#undef GT_FWD
  return cudaErrorInvalidValue;
}

long long backward_partial_floats(int B, int M, int C) {
  const int CB = backward_block_channels(C);
  const int passes = (C + CB - 1) / CB;
  return passes > 1 ? (long long)passes * B * M * 6 : 0;
}

cudaError_t launch_splat_backward(const float* grad_out, const float* means, const float* scales,
                                  const float* rotations, const float* features, const float* opacities,
                                  float* grad_means, float* grad_scales, float* grad_rotations, float* grad_features,
                                  float* grad_opacities, float* partial, int B, int M, int C, int H, int W,
                                  cudaStream_t stream) {
  if (B == 0 || M == 0) return cudaSuccess;
#define GT_BWD(CB)                                                                                               \
  case CB:                                                                                                       \
    return backward_impl<CB>(grad_out, means, scales, rotations, features, opacities, grad_means, grad_scales,   \
                             grad_rotations, grad_features, grad_opacities, partial, B, M, C, H, W, stream)
  switch (backward_block_channels(C)) {
    GT_BWD(1);
    GT_BWD(2);
    GT_BWD(4);
    GT_BWD(8);
    GT_BWD(16);
    GT_BWD(32);
  }
#undef GT_BWD
  return cudaErrorInvalidValue;
}

}  // namespace gaussiantoken

namespace gaussiantoken {

int backward_tile_slot_floats(int C) {
  const int CB = backward_block_channels(C);
  return C + 6 * ((C + CB - 1) / CB);
}

long long backward_prep_bytes(int B, int M) { return (long long)B * M * (long long)(sizeof(Gauss) + sizeof(Box)); }

cudaError_t launch_splat_backward_count(const float* means, const float* scales, const float* rotations,
                                        const float* opacities, long long* counts, void* prep, int B, int M, int H,
                                        int W, cudaStream_t stream) {
  const long long BM = (long long)B * M;
  if (BM == 0) return cudaSuccess;
  Gauss* prep_g = reinterpret_cast<Gauss*>(prep);
  Box* prep_box = reinterpret_cast<Box*>(prep_g + BM);
  splat_backward_count_kernel<<<(unsigned)((BM + 255) / 256), 256, 0, stream>>>(
      means, scales, rotations, opacities, counts, prep_g, prep_box, BM, H, W);
  return cudaGetLastError();
}

cudaError_t launch_splat_backward_tile(const float* grad_out, const float* scales, const float* rotations,
                                       const float* features, const void* prep, const long long* slot_end,
                                       float* ws, float* grad_means, float* grad_scales, float* grad_rotations,
                                       float* grad_features, float* grad_opacities, int B, int M, int C, int H,
                                       int W, cudaStream_t stream) {
  if (B == 0 || M == 0) return cudaSuccess;
  const long long BM = (long long)B * M;
  const Gauss* prep_g = reinterpret_cast<const Gauss*>(prep);
  const Box* prep_box = reinterpret_cast<const Box*>(prep_g + BM);
#define GT_BWD_TILE(CB)                                                                                       \
  case CB:                                                                                                    \
    return backward_tile_impl<CB>(grad_out, scales, rotations, features, prep_g, prep_box, slot_end, ws,      \
                                  grad_means, grad_scales, grad_rotations, grad_features, grad_opacities, B, M, \
                                  C, H, W, stream)
  switch (backward_block_channels(C)) {
    GT_BWD_TILE(1);
    GT_BWD_TILE(2);
    GT_BWD_TILE(4);
    GT_BWD_TILE(8);
    GT_BWD_TILE(16);
    GT_BWD_TILE(32);
  }
#undef GT_BWD_TILE
  return cudaErrorInvalidValue;
}

}  // namespace gaussiantoken
