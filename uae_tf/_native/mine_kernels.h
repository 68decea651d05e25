// The arithmetic of UaeMineTrain, behind an interface of plain C++ types.
//
// mine_kernels.cc includes no TensorFlow or Eigen header, so it is the one file
// compiled with the machine's ISA flags (-march=native ...): TensorFlow's bundled
// Eigen does not compile under every ISA extension g++ knows (AVX512-FP16 on
// Sapphire Rapids and newer, for one), and the op glue in mine_train_op.cc, which
// does, is compiled with TensorFlow's own flags only. The two meet here, through
// pointers, sizes and a parallel-for callback.

#ifndef UAE_TF_NATIVE_MINE_KERNELS_H_
#define UAE_TF_NATIVE_MINE_KERNELS_H_

#include <cstdint>

namespace uae_native {

// Parts of the fused pass per first-layer kernel, each with its own dX partial
// sums (the scratch `dx` holds [B, 2, kParts, K, D] floats).
constexpr int64_t kParts = 2;

// Runs fn(closure, begin, end) over ranges that cover [0, total), possibly on
// several threads at once, and returns when all have run. Every unit's arithmetic
// is independent of how the ranges fall.
using RangeFn = void (*)(void* closure, int64_t begin, int64_t end);
using ParallelFor = void (*)(void* pool, int64_t total, RangeFn fn, void* closure);

// One call of the op, checked by the caller: every pointer holds the floats its
// shape says (see mine_train_op.cc), sizes are >= 1 (batch and views may be 0 only
// if the caller returns before Train), feature maps are at least 2 x 2.
struct Problem {
  bool conv;  // feature-map views [B, K, h, w, 1] (13 tensors), else [B, K, d] (9)
  int64_t batch, views, height, width, filters, inputs, hidden, features, steps;
  float step0, learning_rate;
  // Parameters and Adam moments in uae_tf/_native/__init__.py parameter_order(),
  // updated in place.
  float* const* params;
  float* const* m;
  float* const* v;
  const float* x_views;
  const float* y_views;
  const int32_t* permutations;  // [S, B, K], each value in [0, K)
  float* mi;                    // [S, B], written
  // Scratch: [B, 2, K, D] and [B, 2, kParts, K, D] floats for feature-map views
  // (null for vector views); [B, 2, K, H] and [B, 2, H, K] floats.
  float* scratch_rows;
  float* scratch_dx;
  float* scratch_hidden;
  float* scratch_dh;
};

// Runs problem.steps Adam steps of the batch's statistics networks.
void Train(const Problem& problem, ParallelFor parallel_for, void* pool);

}  // namespace uae_native

#endif  // UAE_TF_NATIVE_MINE_KERNELS_H_
