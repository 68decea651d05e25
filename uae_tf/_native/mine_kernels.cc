// UaeMineTrain's arithmetic: S Adam steps of per-sample MINE statistics networks.
//
// The same network, loss and TF1 Adam update as uae_tf/mine.py (StatisticsNetwork,
// donsker_varadhan, adam_update), for a batch of B independent networks. What it
// changes is how often each first-layer kernel W [H, D] and its moments cross the
// memory bus per step: the forward product reads W once, and one fused pass reads
// W, m and v once, forms the kernel gradient dH^T X and (conv branches) the input
// gradient dH W from the old W in cache, applies Adam and writes W, m and v once:
// 7 passes over a kernel per step, against 10 for TF's kernels with ApplyAdam and
// 13 for XLA's CPU backend. The outputs are written in place across the S steps.
//
// This file includes no TensorFlow or Eigen header: it is compiled with the
// machine's ISA flags (uae_tf/_native/__init__.py), the op glue in
// mine_train_op.cc with TensorFlow's. Parameter order: mine_kernels.h.

#include "mine_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace uae_native {
namespace {
constexpr float kBeta1 = 0.9f;
constexpr float kBeta2 = 0.999f;
constexpr float kEpsilon = 1e-8f;

// Vec: 16 floats, the lanes every machine computes with (so results do not depend
// on the vector width: each lane's arithmetic, and Sum's order over the lanes, are
// the same everywhere). With AVX-512 a Vec is one native vector register; elsewhere
// it is a struct of native vectors, two of AVX's 8 floats or four of SSE's or NEON's
// 4, because GCC compiles a 64-byte vector type without AVX-512 through the stack
// (measured on an AVX2 EPYC: 7x slower). Loads and stores are unaligned.
constexpr int64_t kLanes = 16;
#if defined(__AVX512F__)
typedef float Vec __attribute__((vector_size(64), aligned(4)));
inline Vec Load(const float* p) { return *reinterpret_cast<const Vec*>(p); }
inline void Store(float* p, Vec v) { *reinterpret_cast<Vec*>(p) = v; }
#else
#if defined(__AVX__)
constexpr int kPieceLanes = 8;
#else
constexpr int kPieceLanes = 4;
#endif
constexpr int kPieces = kLanes / kPieceLanes;
typedef float Piece __attribute__((vector_size(4 * kPieceLanes), aligned(4)));
struct Vec {
  Piece piece[kPieces];
  float operator[](int lane) const { return piece[lane / kPieceLanes][lane % kPieceLanes]; }
};
inline Vec Load(const float* p) {
  Vec v;
  for (int i = 0; i < kPieces; ++i) {
    v.piece[i] = *reinterpret_cast<const Piece*>(p + i * kPieceLanes);
  }
  return v;
}
inline void Store(float* p, const Vec& v) {
  for (int i = 0; i < kPieces; ++i) {
    *reinterpret_cast<Piece*>(p + i * kPieceLanes) = v.piece[i];
  }
}
inline Vec operator*(const Vec& a, const Vec& b) {
  Vec r;
  for (int i = 0; i < kPieces; ++i) r.piece[i] = a.piece[i] * b.piece[i];
  return r;
}
inline Vec operator*(float a, const Vec& b) {
  Vec r;
  for (int i = 0; i < kPieces; ++i) r.piece[i] = a * b.piece[i];
  return r;
}
inline Vec& operator+=(Vec& a, const Vec& b) {
  for (int i = 0; i < kPieces; ++i) a.piece[i] += b.piece[i];
  return a;
}
#endif

// The forward product's register tile: kDotViews views x kDotRows kernel rows of
// Vec accumulators. Rows of a first-layer kernel updated together by the fused
// pass: each row of X and dX loaded from cache serves this many kernel rows. (On an
// AVX2 EPYC, tiles of 2 x 2 and 3 rows ran no faster than these.)
constexpr int kDotViews = 4, kDotRows = 4, kRows = 8;
// Columns per tile of the fused pass: a tile's rows of X and dX (2 K x 1024
// floats, 128 KB for K = 16) stay in the L2 cache while the kernel's rows stream
// through it, each row segment a contiguous 4 KB.
constexpr int64_t kTile = 1024;
// Kernel rows per unit of the forward product (the fused pass's parts per kernel,
// kParts, are in mine_kernels.h: they size the caller's scratch).
constexpr int64_t kForwardRows = 32;

inline float Sum(const Vec& v) {
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += v[l];
  return total;
}

// The TF1 AdamOptimizer update of n values (mine.adam_update).
inline void AdamUpdate(float* __restrict w, float* __restrict m, float* __restrict v,
                       const float* __restrict g, int64_t n, float lr_t) {
  for (int64_t i = 0; i < n; ++i) {
    const float mi = kBeta1 * m[i] + (1.0f - kBeta1) * g[i];
    const float vi = kBeta2 * v[i] + (1.0f - kBeta2) * (g[i] * g[i]);
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] - lr_t * mi / (std::sqrt(vi) + kEpsilon);
  }
}

// out[i * out_stride + j] = x[i] . w[j] over n values, for MK rows x and NH rows
// w (strides x_stride, w_stride): MK x NH vector accumulators, each x and w
// chunk loaded once for all of them.
template <int MK, int NH>
inline void DotTile(const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                    int64_t n, float* out, int64_t out_stride) {
  Vec acc[MK][NH] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Vec xv[MK], wv[NH];
    for (int a = 0; a < MK; ++a) xv[a] = Load(x + a * x_stride + i);
    for (int c = 0; c < NH; ++c) wv[c] = Load(w + c * w_stride + i);
    for (int a = 0; a < MK; ++a)
      for (int c = 0; c < NH; ++c) acc[a][c] += xv[a] * wv[c];
  }
  for (int a = 0; a < MK; ++a) {
    for (int c = 0; c < NH; ++c) {
      float total = Sum(acc[a][c]);
      for (int64_t j = i; j < n; ++j) total += x[a * x_stride + j] * w[c * w_stride + j];
      out[a * out_stride + c] = total;
    }
  }
}

template <int MK>
inline void DotRows(const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                    int64_t n, int nh, float* out, int64_t out_stride) {
  switch (nh) {
    case 4: return DotTile<MK, 4>(x, x_stride, w, w_stride, n, out, out_stride);
    case 3: return DotTile<MK, 3>(x, x_stride, w, w_stride, n, out, out_stride);
    case 2: return DotTile<MK, 2>(x, x_stride, w, w_stride, n, out, out_stride);
    default: return DotTile<MK, 1>(x, x_stride, w, w_stride, n, out, out_stride);
  }
}

// hidden[k * H + h] = X[k] . W[h] for k < K and h in [h0, h1).
inline void ForwardRows(const float* x, int64_t K, const float* w, int64_t D, int64_t h0,
                        int64_t h1, float* hidden, int64_t H) {
  for (int64_t h = h0; h < h1; h += kDotRows) {
    const int nh = static_cast<int>(std::min<int64_t>(kDotRows, h1 - h));
    int64_t k = 0;
    for (; k + kDotViews <= K; k += kDotViews) {
      DotRows<kDotViews>(x + k * D, D, w + h * D, D, D, nh, hidden + k * H + h, H);
    }
    for (; k < K; ++k) DotRows<1>(x + k * D, D, w + h * D, D, D, nh, hidden + k * H + h, H);
  }
}

// One tile of the fused pass for NR kernel rows w[r * D + i], i < width, with
// dH^T rows a[r * K + k]: g[r][i] = sum_k a[r, k] x[k * D + i] and (when dx is
// not null) dx[k * D + i] += sum_r a[r, k] w_old[r * D + i].
template <int NR>
inline void GradientTile(const float* a, int64_t K, const float* x, const float* w, int64_t D,
                         int64_t width, float* dx, float (*g)[kTile]) {
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes) {
    Vec gv[NR] = {}, wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = Load(w + r * D + i);
    for (int64_t k = 0; k < K; ++k) {
      const Vec xv = Load(x + k * D + i);
      for (int r = 0; r < NR; ++r) gv[r] += a[r * K + k] * xv;
      if (dx != nullptr) {
        Vec d = Load(dx + k * D + i);
        for (int r = 0; r < NR; ++r) d += a[r * K + k] * wv[r];
        Store(dx + k * D + i, d);
      }
    }
    for (int r = 0; r < NR; ++r) Store(g[r] + i, gv[r]);
  }
  for (; i < width; ++i) {
    float gs[NR] = {};
    for (int64_t k = 0; k < K; ++k) {
      for (int r = 0; r < NR; ++r) gs[r] += a[r * K + k] * x[k * D + i];
      if (dx != nullptr) {
        float d = dx[k * D + i];
        for (int r = 0; r < NR; ++r) d += a[r * K + k] * w[r * D + i];
        dx[k * D + i] = d;
      }
    }
    for (int r = 0; r < NR; ++r) g[r][i] = gs[r];
  }
}

// The fused pass over kernel rows [h0, h1) of W [H, D] (moments m, v): reads each
// weight and its moments once, forms its gradient from dH^T [H, K] and the rows
// X [K, D] in cache, accumulates dX [K, D] (when not null) with the old weights,
// applies Adam and writes weight and moments once.
inline void FusedRows(float* w, float* m, float* v, const float* dht, const float* x,
                      float* dx, int64_t K, int64_t D, int64_t h0, int64_t h1, float lr_t) {
  float g[kRows][kTile];
  for (int64_t d0 = 0; d0 < D; d0 += kTile) {
    for (int64_t h = h0; h < h1; h += kRows) {
      const int nr = static_cast<int>(std::min<int64_t>(kRows, h1 - h));
      const int64_t width = std::min(kTile, D - d0);
      const float* a = dht + h * K;
      float* wt = w + h * D + d0;
      float* dxt = dx == nullptr ? nullptr : dx + d0;
      switch (nr) {
        case 8: GradientTile<8>(a, K, x + d0, wt, D, width, dxt, g); break;
        case 7: GradientTile<7>(a, K, x + d0, wt, D, width, dxt, g); break;
        case 6: GradientTile<6>(a, K, x + d0, wt, D, width, dxt, g); break;
        case 5: GradientTile<5>(a, K, x + d0, wt, D, width, dxt, g); break;
        case 4: GradientTile<4>(a, K, x + d0, wt, D, width, dxt, g); break;
        case 3: GradientTile<3>(a, K, x + d0, wt, D, width, dxt, g); break;
        case 2: GradientTile<2>(a, K, x + d0, wt, D, width, dxt, g); break;
        default: GradientTile<1>(a, K, x + d0, wt, D, width, dxt, g); break;
      }
      for (int r = 0; r < nr; ++r) {
        const int64_t offset = (h + r) * D + d0;
        AdamUpdate(w + offset, m + offset, v + offset, g[r], width, lr_t);
      }
    }
  }
}

// Indices of a branch's tensors in the parameter lists.
struct Branch {
  int conv_kernel, conv_bias, dense1_kernel, dense1_bias, dense2_kernel, dense2_bias;
};

// parallel_for over a lambda fn(begin, end).
template <class Fn>
void For(ParallelFor parallel_for, void* pool, int64_t total, Fn&& fn) {
  parallel_for(
      pool, total,
      [](void* closure, int64_t begin, int64_t end) {
        (*static_cast<std::remove_reference_t<Fn>*>(closure))(begin, end);
      },
      &fn);
}

}  // namespace

void Train(const Problem& s, ParallelFor parallel_for, void* pool) {
  const Branch bx = s.conv ? Branch{0, 1, 2, 3, 4, 5} : Branch{-1, -1, 0, 1, 2, 3};
  const Branch by = s.conv ? Branch{6, 7, 8, 9, 10, 11} : Branch{-1, -1, 4, 5, 6, 7};
  const int output_kernel = s.conv ? 12 : 8;
  float* const* p = s.params;
  float* const* m = s.m;
  float* const* v = s.v;
  float* mi = s.mi;
  const int64_t steps = s.steps;
  const float step0 = s.step0;
  const float learning_rate = s.learning_rate;
  const int64_t B = s.batch, K = s.views, H = s.hidden, D = s.inputs, Fo = s.features;
  const int64_t F = s.filters;
  // Scratch, per sample and branch (r = 0: x, 1: y).
  float* x_rows = s.scratch_rows;
  float* dx = s.scratch_dx;
  float* hidden = s.scratch_hidden;
  float* dh = s.scratch_dh;  // transposed: [H, K] per sample and branch
  const float* views[2] = {s.x_views, s.y_views};
  const Branch branches[2] = {bx, by};
  const int64_t view_size = s.conv ? s.height * s.width : D;

  // X rows of sample b, branch r: [K, D].
  auto rows = [&](int64_t b, int r) -> const float* {
    return s.conv ? x_rows + (b * 2 + r) * K * D : views[r] + b * K * D;
  };

  for (int64_t step = 0; step < steps; ++step) {
    const float t = step0 + static_cast<float>(step + 1);
    const float lr_t = learning_rate * std::sqrt(1.0f - std::pow(kBeta2, t)) /
                       (1.0f - std::pow(kBeta1, t));

    // The conv layer: X[k, p * F + f] = sum_t patch[k, p, t] C[t, f] + c[f].
    if (s.conv) {
      For(parallel_for, pool, B * 2 * K, [&](int64_t begin, int64_t end) {
        for (int64_t u = begin; u < end; ++u) {
          const int64_t b = u / (2 * K), r = (u / K) % 2, k = u % K;
          const Branch& br = branches[r];
          const float* c = p[br.conv_kernel] + b * 4 * F;
          const float* bias = p[br.conv_bias] + b * F;
          const float* view = views[r] + (b * K + k) * view_size;
          float* out = x_rows + ((b * 2 + r) * K + k) * D;
          for (int64_t i = 0; i + 1 < s.height; ++i) {
            for (int64_t j = 0; j + 1 < s.width; ++j) {
              const float taps[4] = {view[i * s.width + j], view[i * s.width + j + 1],
                                     view[(i + 1) * s.width + j],
                                     view[(i + 1) * s.width + j + 1]};
              float* o = out + (i * (s.width - 1) + j) * F;
              for (int64_t f = 0; f < F; ++f) {
                float acc = taps[0] * c[f];
                acc += taps[1] * c[F + f];
                acc += taps[2] * c[2 * F + f];
                acc += taps[3] * c[3 * F + f];
                o[f] = acc + bias[f];
              }
            }
          }
        }
      });
    }

    // The first dense layer: hidden[k, h] = X[k] . W[h] + b1[h].
    const int64_t row_blocks = (H + kForwardRows - 1) / kForwardRows;
    For(parallel_for, pool, B * 2 * row_blocks, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b = u / (2 * row_blocks), r = (u / row_blocks) % 2;
        const int64_t h0 = (u % row_blocks) * kForwardRows;
        const int64_t h1 = std::min(H, h0 + kForwardRows);
        const Branch& br = branches[r];
        const float* bias = p[br.dense1_bias] + b * H;
        float* out = hidden + (b * 2 + r) * K * H;
        ForwardRows(rows(b, r), K, p[br.dense1_kernel] + b * H * D, D, h0, h1, out, H);
        for (int64_t k = 0; k < K; ++k) {
          for (int64_t h = h0; h < h1; ++h) out[k * H + h] += bias[h];
        }
      }
    });

    // Per sample: the second layers, the DV bound, its gradients down to the
    // first layer's outputs, and Adam on everything but the first layer and
    // the conv layers.
    For(parallel_for, pool, B, [&](int64_t begin, int64_t end) {
      std::vector<float> out(2 * K * Fo), d_out(2 * K * Fo), grad(H * Fo);
      std::vector<float> z(K * Fo), t_joint(K), t_marginal(K), d_marginal(K);
      std::vector<float> d_output_kernel(Fo), d_bias(std::max(H, Fo));
      for (int64_t b = begin; b < end; ++b) {
        for (int r = 0; r < 2; ++r) {
          const Branch& br = branches[r];
          const float* h_in = hidden + (b * 2 + r) * K * H;
          const float* w2 = p[br.dense2_kernel] + b * H * Fo;
          const float* b2 = p[br.dense2_bias] + b * Fo;
          for (int64_t k = 0; k < K; ++k) {
            for (int64_t o = 0; o < Fo; ++o) {
              float acc = 0.0f;
              for (int64_t h = 0; h < H; ++h) acc += h_in[k * H + h] * w2[h * Fo + o];
              out[(r * K + k) * Fo + o] = acc + b2[o];
            }
          }
        }
        const float* ox = out.data();
        const float* oy = out.data() + K * Fo;
        const float* wo = p[output_kernel] + b * Fo;
        const int32_t* pi = s.permutations + (step * B + b) * K;
        float joint_sum = 0.0f, max_marginal = -INFINITY;
        for (int64_t k = 0; k < K; ++k) {
          float tj = 0.0f, tm = 0.0f;
          for (int64_t o = 0; o < Fo; ++o) {
            tj += std::max(ox[k * Fo + o] + oy[k * Fo + o], 0.0f) * wo[o];
            tm += std::max(ox[k * Fo + o] + oy[pi[k] * Fo + o], 0.0f) * wo[o];
          }
          t_joint[k] = tj;
          t_marginal[k] = tm;
          joint_sum += tj;
          max_marginal = std::max(max_marginal, tm);
        }
        float exp_sum = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
          d_marginal[k] = std::exp(t_marginal[k] - max_marginal);
          exp_sum += d_marginal[k];
        }
        const float kf = static_cast<float>(K);
        const float lse = max_marginal + std::log(exp_sum);
        mi[step * B + b] = joint_sum / kf - (lse - std::log(kf));
        // d(-MI)/dt_joint = -1/K; d(-MI)/dt_marginal = softmax(t_marginal).
        for (int64_t k = 0; k < K; ++k) d_marginal[k] /= exp_sum;
        std::fill(d_out.begin(), d_out.end(), 0.0f);
        std::fill(d_output_kernel.begin(), d_output_kernel.end(), 0.0f);
        float* dox = d_out.data();
        float* doy = d_out.data() + K * Fo;
        for (int64_t k = 0; k < K; ++k) {
          for (int64_t o = 0; o < Fo; ++o) {
            const float zj = ox[k * Fo + o] + oy[k * Fo + o];
            const float zm = ox[k * Fo + o] + oy[pi[k] * Fo + o];
            const float dj = zj > 0.0f ? -wo[o] / kf : 0.0f;
            const float dm = zm > 0.0f ? d_marginal[k] * wo[o] : 0.0f;
            d_output_kernel[o] += -std::max(zj, 0.0f) / kf + d_marginal[k] * std::max(zm, 0.0f);
            dox[k * Fo + o] += dj + dm;
            doy[k * Fo + o] += dj;
            doy[pi[k] * Fo + o] += dm;
          }
        }
        for (int r = 0; r < 2; ++r) {
          const Branch& br = branches[r];
          const float* h_in = hidden + (b * 2 + r) * K * H;
          const float* d_o = d_out.data() + r * K * Fo;
          float* w2 = p[br.dense2_kernel] + b * H * Fo;
          // dH^T [H, K] with the old second-layer kernel.
          float* dht = dh + (b * 2 + r) * H * K;
          for (int64_t h = 0; h < H; ++h) {
            for (int64_t k = 0; k < K; ++k) {
              float acc = 0.0f;
              for (int64_t o = 0; o < Fo; ++o) acc += d_o[k * Fo + o] * w2[h * Fo + o];
              dht[h * K + k] = acc;
            }
          }
          for (int64_t h = 0; h < H; ++h) {
            for (int64_t o = 0; o < Fo; ++o) {
              float acc = 0.0f;
              for (int64_t k = 0; k < K; ++k) acc += h_in[k * H + h] * d_o[k * Fo + o];
              grad[h * Fo + o] = acc;
            }
          }
          AdamUpdate(w2, m[br.dense2_kernel] + b * H * Fo, v[br.dense2_kernel] + b * H * Fo,
                     grad.data(), H * Fo, lr_t);
          for (int64_t o = 0; o < Fo; ++o) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += d_o[k * Fo + o];
            d_bias[o] = acc;
          }
          AdamUpdate(p[br.dense2_bias] + b * Fo, m[br.dense2_bias] + b * Fo,
                     v[br.dense2_bias] + b * Fo, d_bias.data(), Fo, lr_t);
          for (int64_t h = 0; h < H; ++h) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += dht[h * K + k];
            d_bias[h] = acc;
          }
          AdamUpdate(p[br.dense1_bias] + b * H, m[br.dense1_bias] + b * H,
                     v[br.dense1_bias] + b * H, d_bias.data(), H, lr_t);
        }
        AdamUpdate(p[output_kernel] + b * Fo, m[output_kernel] + b * Fo,
                   v[output_kernel] + b * Fo, d_output_kernel.data(), Fo, lr_t);
      }
    });

    // The fused pass over each first-layer kernel, in kParts row ranges each
    // with its own dX partial sums: read W, m and v once; the kernel gradient
    // dH^T X and (conv) the input gradient dH W_old from X's rows in cache;
    // Adam; write W, m and v once.
    const int64_t part_rows = (H + kParts - 1) / kParts;
    For(parallel_for, pool, B * 2 * kParts, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b = u / (2 * kParts), r = (u / kParts) % 2, part = u % kParts;
        const int64_t h0 = part * part_rows, h1 = std::min(H, h0 + part_rows);
        const Branch& br = branches[r];
        const int64_t offset = b * H * D;
        float* dxp = nullptr;
        if (s.conv) {
          dxp = dx + (((b * 2 + r) * kParts) + part) * K * D;
          std::fill(dxp, dxp + K * D, 0.0f);
        }
        FusedRows(p[br.dense1_kernel] + offset, m[br.dense1_kernel] + offset,
                  v[br.dense1_kernel] + offset, dh + (b * 2 + r) * H * K, rows(b, r), dxp,
                  K, D, h0, h1, lr_t);
      }
    });

    // The conv layers' gradients from dX, and their Adam updates.
    if (s.conv) {
      For(parallel_for, pool, B * 2, [&](int64_t begin, int64_t end) {
        std::vector<float> grad_kernel(4 * F), grad_bias(F);
        for (int64_t u = begin; u < end; ++u) {
          const int64_t b = u / 2;
          const int r = u % 2;
          const Branch& br = branches[r];
          std::fill(grad_kernel.begin(), grad_kernel.end(), 0.0f);
          std::fill(grad_bias.begin(), grad_bias.end(), 0.0f);
          for (int64_t k = 0; k < K; ++k) {
            const float* view = views[r] + (b * K + k) * view_size;
            for (int64_t part = 0; part < kParts; ++part) {
              const float* d = dx + (((b * 2 + r) * kParts + part) * K + k) * D;
              for (int64_t i = 0; i + 1 < s.height; ++i) {
                for (int64_t j = 0; j + 1 < s.width; ++j) {
                  const float taps[4] = {view[i * s.width + j], view[i * s.width + j + 1],
                                         view[(i + 1) * s.width + j],
                                         view[(i + 1) * s.width + j + 1]};
                  const float* dp = d + (i * (s.width - 1) + j) * F;
                  for (int64_t f = 0; f < F; ++f) {
                    grad_bias[f] += dp[f];
                    for (int q = 0; q < 4; ++q) grad_kernel[q * F + f] += taps[q] * dp[f];
                  }
                }
              }
            }
          }
          AdamUpdate(p[br.conv_kernel] + b * 4 * F, m[br.conv_kernel] + b * 4 * F,
                     v[br.conv_kernel] + b * 4 * F, grad_kernel.data(), 4 * F, lr_t);
          AdamUpdate(p[br.conv_bias] + b * F, m[br.conv_bias] + b * F,
                     v[br.conv_bias] + b * F, grad_bias.data(), F, lr_t);
        }
      });
    }
  }
}

}  // namespace uae_native
