/* Internal to the kernel core: reading and writing gradients in either
 * representation (tt_grad_type) with loops compiled once per representation. */
#ifndef TINYTRAIN_KERNELS_CORE_COMMON_GRAD_IO_H_
#define TINYTRAIN_KERNELS_CORE_COMMON_GRAD_IO_H_

#include <math.h>
#include <stdint.h>

#include "../tt_types.h"

namespace tinytrain_core {

struct F32GradReader {
  const float* data;
  float operator[](int32_t i) const { return data[i]; }
};

struct S8GradReader {
  const int8_t* data;
  float scale;
  float operator[](int32_t i) const { return scale * static_cast<float>(data[i]); }
};

// A representation as a type, for kernels that take it as a template argument.
template <tt_grad_type kType>
struct GradTypeConstant {
  static constexpr tt_grad_type value = kType;
};

// Calls body(GradTypeConstant<type>{}): the run-time representation as a compile-time one.
template <typename Body>
void WithGradType(tt_grad_type type, Body&& body) {
  if (type == TT_GRAD_S8) {
    body(GradTypeConstant<TT_GRAD_S8>{});
  } else {
    body(GradTypeConstant<TT_GRAD_F32>{});
  }
}

// The reader of a gradient whose representation is known at compile time.
template <tt_grad_type kType>
auto ReadGradAs(const tt_grad_in& g) {
  if constexpr (kType == TT_GRAD_S8) {
    return S8GradReader{static_cast<const int8_t*>(g.data), g.scale};
  } else {
    return F32GradReader{static_cast<const float*>(g.data)};
  }
}

// Calls body(reader) with the reader for g's representation, so a kernel's
// loops are instantiated per representation with no per-element branch.
template <typename Body>
void WithGradReader(const tt_grad_in& g, Body&& body) {
  if (g.type == TT_GRAD_S8) {
    body(ReadGradAs<TT_GRAD_S8>(g));
  } else {
    body(ReadGradAs<TT_GRAD_F32>(g));
  }
}

// What a kernel writes a gradient through: sink(value) stores the next element in output order;
// sink.Put(index, value) stores element `index`, for a kernel that produces elements out of order.
// A kernel stores each element exactly once per pass, in one way or the other. Copies share the
// position, so a sink may be passed by value.
template <typename Store>
class GradSink {
 public:
  GradSink(Store store, int32_t* next) : store_(store), next_(next) {}
  void operator()(float value) const { store_((*next_)++, value); }
  void Put(int32_t index, float value) const { store_(index, value); }

 private:
  Store store_;
  int32_t* next_;
};

template <typename Store>
GradSink<Store> MakeGradSink(Store store, int32_t* next) {
  return GradSink<Store>(store, next);
}

// Writes a gradient of representation kType described in gather form:
// produce(sink) stores every output element once through sink (GradSink).
// For S8 output produce() runs twice, once to find max|g| and once to
// quantize, so no float scratch buffer of the output's size is ever needed:
// memory over compute, as an MCU wants.
template <tt_grad_type kType, typename Produce>
void WriteGradAs(const tt_grad_out& out, Produce&& produce) {
  int32_t next = 0;
  if constexpr (kType == TT_GRAD_F32) {
    float* data = static_cast<float*>(out.data);
    produce(MakeGradSink([data](int32_t i, float value) { data[i] = value; }, &next));
  } else {
    float max_abs = 0.0f;
    produce(MakeGradSink([&max_abs](int32_t, float value) { max_abs = fmaxf(max_abs, fabsf(value)); }, &next));
    const float scale = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
    const float inv_scale = 1.0f / scale;
    *out.scale = scale;
    int8_t* data = static_cast<int8_t*>(out.data);
    next = 0;
    produce(MakeGradSink(
        [data, inv_scale](int32_t i, float value) {
          // |value| <= max_abs, so the rounded level is within [-127, 127].
          data[i] = static_cast<int8_t>(lroundf(value * inv_scale));
        },
        &next));
  }
}

// WriteGradAs for out's representation, chosen at run time.
template <typename Produce>
void WriteGrad(const tt_grad_out& out, Produce&& produce) {
  if (out.type == TT_GRAD_F32) {
    WriteGradAs<TT_GRAD_F32>(out, produce);
  } else {
    WriteGradAs<TT_GRAD_S8>(out, produce);
  }
}

// A kernel reading one gradient and writing another: body(reader, sink) with
// both representations fixed at compile time, as a generated kernel has them.
template <tt_grad_type kIn, tt_grad_type kOut, typename Body>
void WithGradsAs(const tt_grad_in& in, const tt_grad_out& out, Body&& body) {
  WriteGradAs<kOut>(out, [&](auto sink) { body(ReadGradAs<kIn>(in), sink); });
}

// The same with both representations chosen at run time (the generic kernels).
template <typename Body>
void WithGrads(const tt_grad_in& in, const tt_grad_out& out, Body&& body) {
  WithGradReader(in, [&](auto reader) { WriteGrad(out, [&](auto sink) { body(reader, sink); }); });
}

// The shape of an element-wise kernel, whose bodies read only s.count: a
// run-time value in the generic functions, static constexpr in generated ones.
struct CountShape {
  int32_t count;
};

// tt_grad_add.
template <typename S, typename A, typename B, typename Sink>
void GradAdd(const S& s, const A& a, const B& b, Sink&& sink) {
  for (int32_t i = 0; i < s.count; ++i) sink(a[i] + b[i]);
}

// Argument checks every gradient kernel makes on its gradient operands.
inline bool ValidGradIn(const tt_grad_in* g) {
  return g != nullptr && g->data != nullptr && (g->type == TT_GRAD_F32 || (g->type == TT_GRAD_S8 && g->scale > 0.0f));
}

inline bool ValidGradOut(const tt_grad_out* g) {
  return g != nullptr && g->data != nullptr && (g->type == TT_GRAD_F32 || (g->type == TT_GRAD_S8 && g->scale != nullptr));
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_GRAD_IO_H_
