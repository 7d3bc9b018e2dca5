// Depthwise k x k convolution for XLA:CPU through the JAX FFI (litepose_jax/models/cpu_kernels.py).
//
//   y[b, i, j, c] = act(bias[c] + sum_{u,v} x[b, s*i + u - pad, s*j + v - pad, c] * k[u, v, c])
//
// with x zero outside the image: x [B, H, W, C], k [K, K, C], bias [C]; y [B, (H+2pad-K)/s+1,
// (W+2pad-K)/s+1, C]; act = ReLU6 when relu6 != 0. float32, NHWC. The padding is implicit (border
// columns and rows skip the taps outside), so XLA need not materialise a padded copy of x.
// Each task owns whole output rows; a row is computed in register tiles of kTileW output columns x 16
// channels that accumulate all K*K taps before one store.
// Rows are shared out over XLA's intra-op thread pool.
// The second entry point (LiteposeExpandDepthwise, below) runs a MobileNet block's expand 1x1 conv and its
// depthwise conv, with their BatchNorms and ReLU6, as one call.

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kTileW = 8;

inline float Act(float a, bool relu6) { return relu6 ? std::min(std::max(a, 0.0f), 6.0f) : a; }

// Vectors of 16, 8 and 4 floats (GCC vector extensions: AVX-512, AVX2 and SSE registers where the
// machine has them, split into smaller ones where not); unaligned loads.
typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));
typedef float V4 __attribute__((vector_size(16)));
template <typename VT>
inline VT Load(const float* p) {
  typedef VT VU __attribute__((aligned(4), may_alias));
  return *reinterpret_cast<const VU*>(p);
}

// One output row's view of the (unpadded) input: image base x [H, W, C], the first input row r0 of the
// row's window (i*S - pad, may be negative) and the kernel rows [u_lo, u_hi) that fall inside the image.
struct RowGeo {
  const float* x;
  int64_t W, C, pad, r0, u_lo, u_hi;
};

template <typename VT>
inline VT Relu6(VT v) {   // whole-vector selects (an element loop would extract and insert lanes)
  const VT zero = {}, six = zero + 6.0f;
  v = v > zero ? v : zero;
  return v < six ? v : six;
}

template <typename VT>
inline void StoreV(float* p, VT v) {
  typedef VT VU __attribute__((aligned(4), may_alias));
  *reinterpret_cast<VU*>(p) = v;
}

// One kernel row of a register tile: acc[t] += sum_v x[(S*t + v) * xstep] * k[v * kstep] for the tile's TW
// output columns. Each input vector of the window is loaded once and used by every (column, tap) pair
// that reads it (col = S*t + v), with the row's K weight vectors held in registers.
template <int64_t K, int64_t S, int64_t TW, typename VT>
inline void TileRow(const float* x, int64_t xstep, const float* k, int64_t kstep, VT* acc) {
  VT w[K];
#pragma GCC unroll 8
  for (int64_t v = 0; v < K; ++v) w[v] = Load<VT>(k + v * kstep);
#pragma GCC unroll 32
  for (int64_t col = 0; col < S * (TW - 1) + K; ++col) {
    const VT xv = Load<VT>(x + col * xstep);
#pragma GCC unroll 16
    for (int64_t t = 0; t < TW; ++t) {
      const int64_t v = col - S * t;
      if (v >= 0 && v < K) acc[t] += xv * w[v];   // resolved at compile time after unrolling
    }
  }
}

// TW output columns x L channels (VT holds L floats) of one output row, all taps accumulated in registers
// (TileRow per kernel row); the tile's columns are interior (every tap inside the image).
template <int64_t K, int64_t S, int64_t TW, typename VT>
inline void Tile(const RowGeo& g, const float* k, const float* bias, float* y, int64_t j0, int64_t c0,
                 bool relu6) {
  constexpr int64_t L = sizeof(VT) / sizeof(float);
  const int64_t C = g.C;
  VT acc[TW];
  const VT b = Load<VT>(bias + c0);
#pragma GCC unroll 16
  for (int64_t t = 0; t < TW; ++t) acc[t] = b;
  for (int64_t u = g.u_lo; u < g.u_hi; ++u) {
    TileRow<K, S, TW, VT>(g.x + ((g.r0 + u) * g.W + j0 * S - g.pad) * C + c0, C, k + u * K * C + c0, C, acc);
  }
#pragma GCC unroll 16
  for (int64_t t = 0; t < TW; ++t) StoreV(y + (j0 + t) * C + c0, relu6 ? Relu6(acc[t]) : acc[t]);
}

// One output column near the left or right border: taps outside the image are skipped (zero padding).
template <int64_t K, int64_t S, typename VT>
inline void Edge(const RowGeo& g, const float* k, const float* bias, float* y, int64_t j, int64_t c0,
                 bool relu6) {
  constexpr int64_t L = sizeof(VT) / sizeof(float);
  const int64_t C = g.C;
  VT acc = Load<VT>(bias + c0);
  for (int64_t u = g.u_lo; u < g.u_hi; ++u)
    for (int64_t v = 0; v < K; ++v) {
      const int64_t col = j * S - g.pad + v;
      if (col < 0 || col >= g.W) continue;
      acc += Load<VT>(g.x + ((g.r0 + u) * g.W + col) * C + c0) * Load<VT>(k + (u * K + v) * C + c0);
    }
  StoreV(y + j * C + c0, relu6 ? Relu6(acc) : acc);
}

// The last C % 4 channels, one at a time, any column.
template <int64_t K, int64_t S>
inline void Scalar(const RowGeo& g, const float* k, const float* bias, float* y, int64_t j, int64_t c,
                   bool relu6) {
  const int64_t C = g.C;
  float a = bias[c];
  for (int64_t u = g.u_lo; u < g.u_hi; ++u)
    for (int64_t v = 0; v < K; ++v) {
      const int64_t col = j * S - g.pad + v;
      if (col >= 0 && col < g.W) a += g.x[((g.r0 + u) * g.W + col) * C + c] * k[(u * K + v) * C + c];
    }
  y[j * C + c] = Act(a, relu6);
}

template <int64_t K, int64_t S, typename VT>
inline void Columns(const RowGeo& g, const float* k, const float* bias, float* yrow, int64_t Wo, int64_t c0,
                    bool relu6) {
  // Interior columns [j_lo, j_end): every tap inside the image.
  const int64_t j_lo = std::min(Wo, (g.pad + S - 1) / S);
  const int64_t last = g.W - K + g.pad;   // the largest j*S with the window's right end inside
  const int64_t j_end = last < 0 ? j_lo : std::max(j_lo, std::min(Wo, last / S + 1));
  for (int64_t j = 0; j < j_lo; ++j) Edge<K, S, VT>(g, k, bias, yrow, j, c0, relu6);
  int64_t j0 = j_lo;
  for (; j0 + kTileW <= j_end; j0 += kTileW) Tile<K, S, kTileW, VT>(g, k, bias, yrow, j0, c0, relu6);
  for (; j0 < j_end; ++j0) Tile<K, S, 1, VT>(g, k, bias, yrow, j0, c0, relu6);
  for (int64_t j = j_end; j < Wo; ++j) Edge<K, S, VT>(g, k, bias, yrow, j, c0, relu6);
}

// One output row: channel blocks of 16, then 8, 4 and single channels for the remainder.
template <int64_t K, int64_t S>
void Row(const RowGeo& g, const float* k, const float* bias, float* yrow, int64_t Wo, bool relu6) {
  const int64_t C = g.C;
  int64_t c0 = 0;
  for (; c0 + 16 <= C; c0 += 16) Columns<K, S, V16>(g, k, bias, yrow, Wo, c0, relu6);
  for (; c0 + 8 <= C; c0 += 8) Columns<K, S, V8>(g, k, bias, yrow, Wo, c0, relu6);
  for (; c0 + 4 <= C; c0 += 4) Columns<K, S, V4>(g, k, bias, yrow, Wo, c0, relu6);
  for (; c0 < C; ++c0)
    for (int64_t j = 0; j < Wo; ++j) Scalar<K, S>(g, k, bias, yrow, j, c0, relu6);
}

using RowFn = void (*)(const RowGeo&, const float*, const float*, float*, int64_t, bool);

RowFn Select(int64_t K, int64_t S) {
  if (S == 1) {
    if (K == 3) return Row<3, 1>;
    if (K == 5) return Row<5, 1>;
    if (K == 7) return Row<7, 1>;
  } else if (S == 2) {
    if (K == 3) return Row<3, 2>;
    if (K == 5) return Row<5, 2>;
    if (K == 7) return Row<7, 2>;
  }
  return nullptr;
}

// Runs fn(i0, i1) over [0, n) in chunks, on this thread and on tasks of XLA's intra-op pool; returns when
// every chunk is done. Chunks are claimed from a shared counter: a task that starts late (its core busy)
// finds nothing left and ends without touching the buffers; the counters live on the heap so it may
// outlive this call (fn must hold what it reads by value).
template <typename Fn>
void ParallelFor(ffi::ThreadPool& pool, int64_t n, int64_t chunk, Fn fn) {
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), n));
  if (tasks == 1) {
    fn(0, n);
    return;
  }
  struct Counters {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto counters = std::make_shared<Counters>();
  auto work = [counters, fn, n, chunk]() {
    for (;;) {
      const int64_t i0 = counters->next.fetch_add(chunk, std::memory_order_relaxed);
      if (i0 >= n) return;
      const int64_t i1 = std::min(n, i0 + chunk);
      fn(i0, i1);
      counters->done.fetch_add(i1 - i0, std::memory_order_release);
    }
  };
  for (int64_t t = 1; t < tasks; ++t) pool.Schedule([work]() { work(); });
  work();
  while (counters->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

ffi::Error DepthwiseImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                         ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> y, int64_t stride,
                         int64_t pad, int64_t relu6) {
  auto xd = x.dimensions();
  auto kd = k.dimensions();
  auto yd = y->dimensions();
  if (xd.size() != 4 || kd.size() != 3 || yd.size() != 4 || kd[0] != kd[1] || kd[2] != xd[3] ||
      yd[3] != xd[3] || bias.dimensions().size() != 1 || bias.dimensions()[0] != xd[3]) {
    return ffi::Error::InvalidArgument("litepose_depthwise: bad shapes");
  }
  const int64_t B = xd[0], H = xd[1], W = xd[2], C = xd[3], K = kd[0], s = stride;
  const int64_t Ho = yd[1], Wo = yd[2];
  if (pad < 0 || pad >= K || Ho != (H + 2 * pad - K) / s + 1 || Wo != (W + 2 * pad - K) / s + 1) {
    return ffi::Error::InvalidArgument("litepose_depthwise: output size does not match input and padding");
  }
  const RowFn row_fn = Select(K, s);
  if (row_fn == nullptr) {
    return ffi::Error::InvalidArgument("litepose_depthwise: kernel size must be 3, 5 or 7 and stride 1 or 2");
  }
  const float* xx = x.typed_data();
  const float* kk = k.typed_data();
  const float* bb = bias.typed_data();
  float* out = y->typed_data();
  const int64_t rows = B * Ho;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  ParallelFor(pool, rows, std::max<int64_t>(1, rows / (4 * threads)), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / Ho, i = r % Ho;
      const int64_t first = i * s - pad;
      const RowGeo g{xx + b * H * W * C, W, C, pad, first, std::max<int64_t>(0, -first),
                     std::min<int64_t>(K, H - first)};
      row_fn(g, kk, bb, out + r * Wo * C, Wo, relu6 != 0);
    }
  });
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------------
// The MobileNet block's first half, fused: expand 1x1 conv → BN → ReLU6 → depthwise k x k → BN → ReLU6.
//
//   e[r, q, c] = relu6(ea[c] * sum_ci x[b, r, q, ci] * we[ci, c] + eb[c])          (expanded, [H, W, E])
//   y[b, i, j, c] = relu6(da[c] * sum_{u,v} e[s*i + u - pad, s*j + v - pad, c] * wd[u, v, c] + db[c])
//
// with e zero outside the image and the BatchNorms folded in here from their four vectors (a = scale /
// sqrt(var + eps), b = bias - mean * a). The depthwise conv never mixes channels, so a task owns one
// image and one block of L channels (16, or 8 when E is not a multiple of 16) for every row: it expands
// only its channels into a ring of K rows of the block's padded width, one row per step down the image,
// and reads the depthwise windows from there. The expanded tensor (6x the block's input) never leaves
// the cache, and no halo row is computed twice.

struct FusedGeo {
  const float *x, *we, *wd, *ea, *eb, *da, *db;
  int64_t H, W, Cin, E, pad, Ho, Wo;
};

// TW pixels of one input row expanded into L channels: xp points at the first pixel's Cin inputs.
template <int64_t TW, typename VT>
inline void ExpandTile(const float* xp, int64_t Cin, const float* we, int64_t E, VT a, VT b, float* out) {
  constexpr int64_t L = sizeof(VT) / sizeof(float);
  VT acc[TW];
#pragma GCC unroll 16
  for (int64_t t = 0; t < TW; ++t) acc[t] = VT{};
  for (int64_t ci = 0; ci < Cin; ++ci) {
    const VT w = Load<VT>(we + ci * E);
#pragma GCC unroll 16
    for (int64_t t = 0; t < TW; ++t) acc[t] += xp[t * Cin + ci] * w;
  }
#pragma GCC unroll 16
  for (int64_t t = 0; t < TW; ++t) StoreV(out + t * L, Relu6(acc[t] * a + b));
}

// TW output columns of one output row from the ring's padded rows (rows[u] for kernel row u; nullptr: a
// row outside the image, skipped).
template <int64_t K, int64_t S, int64_t TW, typename VT>
inline void FusedDwTile(const float* const* rows, const float* wd, int64_t E, VT a, VT b, float* y,
                        int64_t ystride, int64_t j0) {
  constexpr int64_t L = sizeof(VT) / sizeof(float);
  VT acc[TW];
#pragma GCC unroll 16
  for (int64_t t = 0; t < TW; ++t) acc[t] = VT{};
  for (int64_t u = 0; u < K; ++u) {
    if (rows[u] != nullptr) TileRow<K, S, TW, VT>(rows[u] + j0 * S * L, L, wd + u * K * E, E, acc);
  }
#pragma GCC unroll 16
  for (int64_t t = 0; t < TW; ++t) StoreV(y + (j0 + t) * ystride, Relu6(acc[t] * a + b));
}

// One (image, channel block): all output rows. ring: K * (W + 2 pad) * L floats of scratch.
template <int64_t K, int64_t S, typename VT>
void FusedBlock(const FusedGeo& g, int64_t b, int64_t c0, float* ring, float* y) {
  constexpr int64_t L = sizeof(VT) / sizeof(float);
  const int64_t Wp = g.W + 2 * g.pad;
  std::fill(ring, ring + K * Wp * L, 0.0f);   // the pad columns stay zero
  int64_t tag[K];
  for (int64_t u = 0; u < K; ++u) tag[u] = -1;
  const VT ea = Load<VT>(g.ea + c0), eb = Load<VT>(g.eb + c0), da = Load<VT>(g.da + c0),
           db = Load<VT>(g.db + c0);
  const float* we = g.we + c0;
  const float* wd = g.wd + c0;
  const float* xb = g.x + b * g.H * g.W * g.Cin;
  for (int64_t i = 0; i < g.Ho; ++i) {
    const float* rows[K];
    for (int64_t u = 0; u < K; ++u) {
      const int64_t r = i * S - g.pad + u;
      if (r < 0 || r >= g.H) {
        rows[u] = nullptr;
        continue;
      }
      float* slot = ring + (r % K) * Wp * L;   // K consecutive rows fall in K distinct slots
      if (tag[r % K] != r) {
        const float* xr = xb + r * g.W * g.Cin;
        float* out = slot + g.pad * L;
        int64_t q = 0;
        for (; q + 8 <= g.W; q += 8) ExpandTile<8, VT>(xr + q * g.Cin, g.Cin, we, g.E, ea, eb, out + q * L);
        for (; q < g.W; ++q) ExpandTile<1, VT>(xr + q * g.Cin, g.Cin, we, g.E, ea, eb, out + q * L);
        tag[r % K] = r;
      }
      rows[u] = slot;
    }
    float* yrow = y + ((b * g.Ho + i) * g.Wo) * g.E + c0;
    int64_t j0 = 0;
    for (; j0 + kTileW <= g.Wo; j0 += kTileW) FusedDwTile<K, S, kTileW, VT>(rows, wd, g.E, da, db, yrow, g.E, j0);
    for (; j0 < g.Wo; ++j0) FusedDwTile<K, S, 1, VT>(rows, wd, g.E, da, db, yrow, g.E, j0);
  }
}

using BlockFn = void (*)(const FusedGeo&, int64_t, int64_t, float*, float*);

template <typename VT>
BlockFn SelectBlock(int64_t K, int64_t S) {
  if (S == 1) {
    if (K == 3) return FusedBlock<3, 1, VT>;
    if (K == 5) return FusedBlock<5, 1, VT>;
    if (K == 7) return FusedBlock<7, 1, VT>;
  } else if (S == 2) {
    if (K == 3) return FusedBlock<3, 2, VT>;
    if (K == 5) return FusedBlock<5, 2, VT>;
    if (K == 7) return FusedBlock<7, 2, VT>;
  }
  return nullptr;
}

// Folded BatchNorm a = scale / sqrt(var + eps), b = bias - mean * a, written to a[0..n), b[0..n).
void Fold(const float* scale, const float* bias, const float* mean, const float* var, float eps, int64_t n,
          float* a, float* b) {
  for (int64_t c = 0; c < n; ++c) {
    a[c] = scale[c] / std::sqrt(var[c] + eps);
    b[c] = bias[c] - mean[c] * a[c];
  }
}

ffi::Error ExpandDepthwiseImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> we,
                               ffi::Buffer<ffi::F32> es, ffi::Buffer<ffi::F32> eb, ffi::Buffer<ffi::F32> em,
                               ffi::Buffer<ffi::F32> ev, ffi::Buffer<ffi::F32> wd, ffi::Buffer<ffi::F32> ds,
                               ffi::Buffer<ffi::F32> dbias, ffi::Buffer<ffi::F32> dm, ffi::Buffer<ffi::F32> dv,
                               ffi::ResultBuffer<ffi::F32> y, int64_t stride, float eps) {
  auto xd = x.dimensions();
  auto wed = we.dimensions();
  auto wdd = wd.dimensions();
  auto yd = y->dimensions();
  if (xd.size() != 4 || wed.size() != 2 || wdd.size() != 3 || yd.size() != 4 || wed[0] != xd[3] ||
      wdd[0] != wdd[1] || wdd[2] != wed[1] || yd[3] != wed[1] || yd[0] != xd[0]) {
    return ffi::Error::InvalidArgument("litepose_expand_depthwise: bad shapes");
  }
  const int64_t E = wed[1];
  for (auto* v : {&es, &eb, &em, &ev, &ds, &dbias, &dm, &dv}) {
    if (v->dimensions().size() != 1 || v->dimensions()[0] != E) {
      return ffi::Error::InvalidArgument("litepose_expand_depthwise: BatchNorm vectors must have E entries");
    }
  }
  const int64_t B = xd[0], H = xd[1], W = xd[2], K = wdd[0], S = stride, pad = K / 2;
  const int64_t Ho = yd[1], Wo = yd[2];
  if (Ho != (H + 2 * pad - K) / S + 1 || Wo != (W + 2 * pad - K) / S + 1) {
    return ffi::Error::InvalidArgument("litepose_expand_depthwise: output size does not match the input");
  }
  const int64_t L = E % 16 == 0 ? 16 : 8;
  if (E % L != 0) return ffi::Error::InvalidArgument("litepose_expand_depthwise: E must be a multiple of 8");
  const BlockFn fn = L == 16 ? SelectBlock<V16>(K, S) : SelectBlock<V8>(K, S);
  if (fn == nullptr) {
    return ffi::Error::InvalidArgument("litepose_expand_depthwise: kernel size must be 3, 5 or 7 and stride 1 or 2");
  }
  auto folded = std::make_shared<std::vector<float>>(4 * E);
  float* f = folded->data();
  Fold(es.typed_data(), eb.typed_data(), em.typed_data(), ev.typed_data(), eps, E, f, f + E);
  Fold(ds.typed_data(), dbias.typed_data(), dm.typed_data(), dv.typed_data(), eps, E, f + 2 * E, f + 3 * E);
  const FusedGeo g{x.typed_data(), we.typed_data(), wd.typed_data(), f, f + E, f + 2 * E, f + 3 * E,
                   H, W, xd[3], E, pad, Ho, Wo};
  float* out = y->typed_data();
  const int64_t blocks = E / L, ring = K * (W + 2 * pad) * L;
  // Each task claims a contiguous share of the (image, channel block) items. The lambda holds `folded`,
  // so a pool task that starts after this call returns (and finds no work) still sees valid memory.
  const int64_t items = B * blocks, threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t share = (items + threads - 1) / threads;
  ParallelFor(pool, items, share, [g, fn, blocks, ring, out, L, folded](int64_t i0, int64_t i1) {
    std::vector<float> scratch(ring);
    for (int64_t i = i0; i < i1; ++i) fn(g, i / blocks, (i % blocks) * L, scratch.data(), out);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LiteposeDepthwise, DepthwiseImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad")
                                  .Attr<int64_t>("relu6"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LiteposeExpandDepthwise, ExpandDepthwiseImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // x [B, H, W, Cin]
                                  .Arg<ffi::Buffer<ffi::F32>>()   // expand kernel [Cin, E]
                                  .Arg<ffi::Buffer<ffi::F32>>()   // expand BN scale, bias, mean, var [E]
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // depthwise kernel [K, K, E]
                                  .Arg<ffi::Buffer<ffi::F32>>()   // depthwise BN scale, bias, mean, var [E]
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()   // y [B, Ho, Wo, E]
                                  .Attr<int64_t>("stride")
                                  .Attr<float>("eps"));
