// UaeMineTrain: S Adam steps of per-sample MINE statistics networks, one CPU op.
//
// This file is the TensorFlow side: the op's registration, every check of its
// inputs (a bad input is an InvalidArgumentError naming the value, never a crash
// or a read of memory the op did not write), the outputs and scratch, and the
// thread pool. The arithmetic is in mine_kernels.cc, which includes no TensorFlow
// header, so this file is compiled with TensorFlow's own flags and that one with
// the machine's ISA flags (uae_tf/_native/__init__.py says why).
//
// Parameters, moments and outputs are lists in the order of
// uae_tf/_native/__init__.py parameter_order():
//   per branch (x, then y): [conv_kernel [B,4,F], conv_bias [B,F],]
//     dense1_kernel [B,H,D] (output-major), dense1_bias [B,H],
//     dense2_kernel [B,H,Fo], dense2_bias [B,Fo];
//   then output_kernel [B,Fo].
// 13 tensors for feature-map views [B,K,h,w,1], 9 for vector views [B,K,d], with
// D = (h-1)(w-1)F for feature maps (the statistics network's 2x2 valid
// convolution) and D = d for vectors.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "mine_kernels.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/threadpool.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpInputList;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::TensorShapeUtils;
using tensorflow::errors::InvalidArgument;

// a * b, or false when it does not fit in an int64 (a, b >= 0).
bool Multiply(int64_t a, int64_t b, int64_t* out) {
  if (b != 0 && a > std::numeric_limits<int64_t>::max() / b) return false;
  *out = a * b;
  return true;
}

// The shape `dims` of `what`, or an error naming it when its element count (or a
// partial product TensorShape forms on the way) overflows an int64.
absl::Status Shape(const char* what, std::initializer_list<int64_t> dims, TensorShape* out) {
  int64_t count = 1;
  std::string text;
  for (int64_t d : dims) text += (text.empty() ? "" : ", ") + std::to_string(d);
  for (int64_t d : dims) {
    if (d < 0 || !Multiply(count, d, &count)) {
      return InvalidArgument("UaeMineTrain: ", what, " would have shape [", text,
                             "], more than 2^63 - 1 elements");
    }
  }
  return TensorShapeUtils::MakeShape(std::vector<int64_t>(dims).data(),
                                     static_cast<int64_t>(dims.size()), out);
}

// uae_native::ParallelFor on TensorFlow's CPU thread pool, one unit per shard.
void RunOnPool(void* pool, int64_t total, uae_native::RangeFn fn, void* closure) {
  using tensorflow::thread::ThreadPool;
  static_cast<ThreadPool*>(pool)->ParallelFor(
      total,
      ThreadPool::SchedulingParams(ThreadPool::SchedulingStrategy::kFixedBlockSize, {}, 1),
      [fn, closure](int64_t begin, int64_t end) { fn(closure, begin, end); });
}

// Indices of a branch's tensors in the parameter lists.
struct Branch {
  int conv_kernel, conv_bias, dense1_kernel, dense1_bias, dense2_kernel, dense2_bias;
};

class UaeMineTrainOp : public OpKernel {
 public:
  explicit UaeMineTrainOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    OpInputList params_in, m_in, v_in;
    OP_REQUIRES_OK(context, context->input_list("params", &params_in));
    OP_REQUIRES_OK(context, context->input_list("m", &m_in));
    OP_REQUIRES_OK(context, context->input_list("v", &v_in));
    const int n = params_in.size();
    const Tensor& x_views = context->input(3 * n);
    const Tensor& y_views = context->input(3 * n + 1);
    const Tensor& permutations = context->input(3 * n + 2);
    const Tensor& step_in = context->input(3 * n + 3);
    const Tensor& rate_in = context->input(3 * n + 4);

    OP_REQUIRES(context, n == 9 || n == 13,
                InvalidArgument("UaeMineTrain takes 9 (vector views) or 13 (feature-map "
                                "views) parameter tensors, got ", n));
    OP_REQUIRES(context, TensorShapeUtils::IsScalar(step_in.shape()),
                InvalidArgument("step must be a scalar, got shape ",
                                step_in.shape().DebugString()));
    OP_REQUIRES(context, TensorShapeUtils::IsScalar(rate_in.shape()),
                InvalidArgument("learning_rate must be a scalar, got shape ",
                                rate_in.shape().DebugString()));
    uae_native::Problem s{};
    s.conv = n == 13;
    OP_REQUIRES(context, x_views.shape() == y_views.shape(),
                InvalidArgument("x_views and y_views must have one shape, got ",
                                x_views.shape().DebugString(), " and ",
                                y_views.shape().DebugString()));
    OP_REQUIRES(context, x_views.dims() == (s.conv ? 5 : 3),
                InvalidArgument(s.conv ? "feature-map views must be [B, K, h, w, 1], got "
                                       : "vector views must be [B, K, d], got ",
                                x_views.shape().DebugString()));
    s.batch = x_views.dim_size(0);
    s.views = x_views.dim_size(1);
    const Branch bx = s.conv ? Branch{0, 1, 2, 3, 4, 5} : Branch{-1, -1, 0, 1, 2, 3};
    const Branch by = s.conv ? Branch{6, 7, 8, 9, 10, 11} : Branch{-1, -1, 4, 5, 6, 7};
    const int output_kernel = n - 1;
    const Tensor& w1 = params_in[bx.dense1_kernel];
    OP_REQUIRES(context, w1.dims() == 3 && w1.dim_size(0) == s.batch,
                InvalidArgument("dense1 kernels must be [B, H, D] with B = ", s.batch,
                                ", got ", w1.shape().DebugString()));
    OP_REQUIRES(context, params_in[output_kernel].dims() == 2,
                InvalidArgument("the output kernel must be [B, Fo], got ",
                                params_in[output_kernel].shape().DebugString()));
    s.hidden = w1.dim_size(1);
    s.inputs = w1.dim_size(2);
    s.features = params_in[output_kernel].dim_size(1);
    if (s.conv) {
      OP_REQUIRES(context, params_in[bx.conv_bias].dims() == 2,
                  InvalidArgument("the conv biases must be [B, F], got ",
                                  params_in[bx.conv_bias].shape().DebugString()));
      s.height = x_views.dim_size(2);
      s.width = x_views.dim_size(3);
      s.filters = params_in[bx.conv_bias].dim_size(1);
      // The statistics network's 2x2 valid convolution needs at least 2 x 2.
      OP_REQUIRES(context, x_views.dim_size(4) == 1 && s.height >= 2 && s.width >= 2,
                  InvalidArgument("feature-map views must be [B, K, h, w, 1] with h, w >= 2, "
                                  "got ", x_views.shape().DebugString()));
      int64_t inputs = 0;
      OP_REQUIRES(context,
                  Multiply(s.height - 1, s.width - 1, &inputs) &&
                      Multiply(inputs, s.filters, &inputs) && inputs == s.inputs,
                  InvalidArgument("feature-map views ", x_views.shape().DebugString(),
                                  " with ", s.filters, " filters do not match dense1 kernels ",
                                  w1.shape().DebugString(),
                                  " (D must be (h - 1) (w - 1) F)"));
    } else {
      OP_REQUIRES(context, x_views.dim_size(2) == s.inputs,
                  InvalidArgument("vector views ", x_views.shape().DebugString(),
                                  " do not match dense1 kernels ", w1.shape().DebugString()));
    }
    // Every parameter's shape, from B, H, D, F and Fo: the kernel reads them unchecked.
    std::vector<TensorShape> expected(n);
    for (const Branch& br : {bx, by}) {
      if (s.conv) {
        OP_REQUIRES_OK(context, Shape("a conv kernel", {s.batch, 4, s.filters},
                                      &expected[br.conv_kernel]));
        expected[br.conv_bias] = params_in[bx.conv_bias].shape();
      }
      expected[br.dense1_kernel] = w1.shape();
      OP_REQUIRES_OK(context, Shape("a dense1 bias", {s.batch, s.hidden},
                                    &expected[br.dense1_bias]));
      OP_REQUIRES_OK(context, Shape("a dense2 kernel", {s.batch, s.hidden, s.features},
                                    &expected[br.dense2_kernel]));
      expected[br.dense2_bias] = params_in[output_kernel].shape();
    }
    expected[output_kernel] = params_in[output_kernel].shape();
    for (int i = 0; i < n; ++i) {
      OP_REQUIRES(context,
                  params_in[i].shape() == expected[i] && m_in[i].shape() == expected[i] &&
                      v_in[i].shape() == expected[i],
                  InvalidArgument("parameter ", i, " and its moments must have shape ",
                                  expected[i].DebugString(), ", got ",
                                  params_in[i].shape().DebugString(), ", ",
                                  m_in[i].shape().DebugString(), " and ",
                                  v_in[i].shape().DebugString()));
    }
    OP_REQUIRES(context,
                permutations.dims() == 3 && permutations.dim_size(1) == s.batch &&
                    permutations.dim_size(2) == s.views,
                InvalidArgument("permutations must be [S, B, K] = [S, ", s.batch, ", ",
                                s.views, "], got ", permutations.shape().DebugString()));
    s.steps = permutations.dim_size(0);
    const int32_t* perm = permutations.flat<int32_t>().data();
    for (int64_t i = 0; i < permutations.NumElements(); ++i) {
      OP_REQUIRES(context, perm[i] >= 0 && perm[i] < s.views,
                  InvalidArgument("permutations must hold view indices in [0, ", s.views,
                                  "), got ", perm[i]));
    }
    s.step0 = step_in.scalar<float>()();
    s.learning_rate = rate_in.scalar<float>()();
    s.permutations = perm;
    s.x_views = x_views.flat<float>().data();
    s.y_views = y_views.flat<float>().data();

    // Outputs are the inputs' buffers when TF can hand them over (no other
    // reference), else copies; either way they are updated in place.
    std::vector<float*> p(n), m(n), v(n);
    std::vector<const float*> sources;
    std::vector<float*> targets;
    std::vector<int64_t> lengths;
    for (int i = 0; i < n; ++i) {
      std::vector<float*>* lists[3] = {&p, &m, &v};
      for (int j = 0; j < 3; ++j) {
        Tensor* out;
        int forwarded = -1;
        OP_REQUIRES_OK(context, context->forward_input_or_allocate_output(
                                    {j * n + i}, j * n + i, params_in[i].shape(), &out,
                                    &forwarded));
        (*lists[j])[i] = out->flat<float>().data();
        if (forwarded < 0) {
          sources.push_back(context->input(j * n + i).flat<float>().data());
          targets.push_back(out->flat<float>().data());
          lengths.push_back(out->NumElements());
        }
      }
    }
    TensorShape mi_shape;
    OP_REQUIRES_OK(context, Shape("mi", {s.steps, s.batch}, &mi_shape));
    Tensor* mi_tensor;
    OP_REQUIRES_OK(context, context->allocate_output(3 * n, mi_shape, &mi_tensor));
    s.mi = mi_tensor->flat<float>().data();
    if (s.batch == 0 || s.views == 0) {
      for (size_t i = 0; i < sources.size(); ++i) {
        std::memcpy(targets[i], sources[i], lengths[i] * sizeof(float));
      }
      std::fill(s.mi, s.mi + mi_tensor->NumElements(), 0.0f);
      return;
    }

    // Scratch, per sample and branch (mine_kernels.h).
    const int64_t B = s.batch, K = s.views, H = s.hidden, D = s.inputs;
    Tensor x_rows_t, dx_t, hidden_t, dh_t;
    TensorShape shape;
    if (s.conv) {
      OP_REQUIRES_OK(context, Shape("the conv rows' scratch", {B, 2, K, D}, &shape));
      OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, shape, &x_rows_t));
      OP_REQUIRES_OK(context, Shape("the input gradients' scratch",
                                    {B, 2, uae_native::kParts, K, D}, &shape));
      OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, shape, &dx_t));
      s.scratch_rows = x_rows_t.flat<float>().data();
      s.scratch_dx = dx_t.flat<float>().data();
    }
    OP_REQUIRES_OK(context, Shape("the hidden layer's scratch", {B, 2, K, H}, &shape));
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, shape, &hidden_t));
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, shape, &dh_t));
    s.scratch_hidden = hidden_t.flat<float>().data();
    s.scratch_dh = dh_t.flat<float>().data();

    auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
    // Copy in blocks, so that both threads stream the big kernels.
    {
      std::vector<std::pair<int64_t, int64_t>> pieces;  // (tensor, block)
      constexpr int64_t kCopyBlock = 1 << 18;
      for (size_t i = 0; i < sources.size(); ++i) {
        for (int64_t b = 0; b * kCopyBlock < lengths[i]; ++b) pieces.emplace_back(i, b);
      }
      auto copy = [&](int64_t begin, int64_t end) {
        for (int64_t u = begin; u < end; ++u) {
          const int64_t i = pieces[u].first, start = pieces[u].second * kCopyBlock;
          const int64_t count = std::min(kCopyBlock, lengths[i] - start);
          std::memcpy(targets[i] + start, sources[i] + start, count * sizeof(float));
        }
      };
      RunOnPool(
          pool, pieces.size(),
          [](void* closure, int64_t begin, int64_t end) {
            (*static_cast<decltype(copy)*>(closure))(begin, end);
          },
          &copy);
    }
    s.params = p.data();
    s.m = m.data();
    s.v = v.data();
    uae_native::Train(s, RunOnPool, pool);
  }
};

}  // namespace

REGISTER_OP("UaeMineTrain")
    .Attr("N: int >= 1")
    .Input("params: N * float")
    .Input("m: N * float")
    .Input("v: N * float")
    .Input("x_views: float")
    .Input("y_views: float")
    .Input("permutations: int32")
    .Input("step: float")
    .Input("learning_rate: float")
    .Output("new_params: N * float")
    .Output("new_m: N * float")
    .Output("new_v: N * float")
    .Output("mi: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int n;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      for (int i = 0; i < 3 * n; ++i) c->set_output(i, c->input(i));
      auto perm = c->input(3 * n + 2);
      tensorflow::shape_inference::ShapeHandle mi = c->Matrix(
          c->UnknownDim(), c->UnknownDim());
      if (c->RankKnown(perm) && c->Rank(perm) == 3) {
        mi = c->Matrix(c->Dim(perm, 0), c->Dim(perm, 1));
      }
      c->set_output(3 * n, mi);
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("UaeMineTrain").Device(DEVICE_CPU), UaeMineTrainOp);
