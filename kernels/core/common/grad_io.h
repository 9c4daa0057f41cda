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
// A kernel stores each element exactly once per pass, in one way or the other.
// The sink holds its state by value (the position, the output pointer and, for int8, 1/scale and the
// running max|g|), so that a loop can keep it in registers: an int8 store may alias any memory, and
// state reached through a pointer was reloaded and stored again around every element (about half of
// the writer's instructions). So kernels take a sink by reference and never copy it (the copy
// constructor is deleted: a copy would write from its own position and keep its own max|g|). A
// kernel function the compiler may not inline works on LocalCopy() and hands it back with
// Resume(): the copy is the function's local, whose address nothing takes.
template <typename Store>
class GradSink {
 public:
  explicit GradSink(Store store) : store_(store) {}
  GradSink(const GradSink&) = delete;
  GradSink& operator=(const GradSink&) = delete;
  void operator()(float value) { store_(next_++, value); }
  void Put(int32_t index, float value) { store_(index, value); }
  GradSink LocalCopy() const { return GradSink(store_, next_); }
  void Resume(const GradSink& local) {
    store_ = local.store_;
    next_ = local.next_;
  }
  const Store& store() const { return store_; }

 private:
  GradSink(Store store, int32_t next) : store_(store), next_(next) {}
  Store store_;
  int32_t next_ = 0;
};

// Whether the FPU has VMAXNM and VMINNM (FPv5: the Cortex-M7's double-precision one, every ARMv8-M
// one), which GCC emits for fmaxf and fminf: one instruction each, where a comparison takes four (the
// compare, the flags' transfer, an IT and a move). On the Cortex-M4F's FPv4 they are library calls.
#if defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M' && defined(__ARM_FP) && \
    ((__ARM_FP & 8) != 0 || __ARM_ARCH >= 8)
#define TT_FPU_HAS_MAXNM 1
#else
#define TT_FPU_HAS_MAXNM 0
#endif

// max(max_abs, |value|). Both forms give the same bits for every value a gradient holds (no NaN).
inline float LargerMagnitude(float max_abs, float value) {
  const float magnitude = fabsf(value);
#if TT_FPU_HAS_MAXNM
  return fmaxf(max_abs, magnitude);
#else
  return magnitude > max_abs ? magnitude : max_abs;
#endif
}

// level limited to [-127, 127]. Where a comparison decides, one comparison of the magnitude, rarely
// true, clamps both sides.
inline float WithinLevels(float level) {
#if TT_FPU_HAS_MAXNM
  return fminf(fmaxf(level, -127.0f), 127.0f);
#else
  if (fabsf(level) > 127.0f) level = level > 0.0f ? 127.0f : -127.0f;
  return level;
#endif
}

// The stores of GradSink: float32 values, int8 levels at one scale, or only the max|g|.
struct F32Store {
  float* data;
  void operator()(int32_t i, float value) const { data[i] = value; }
};

struct S8Store {
  int8_t* data;
  float inv_scale;
  float max_abs;
  void operator()(int32_t i, float value) {
    max_abs = LargerMagnitude(max_abs, value);
    // At a predicted scale a value can round past int8 (that pass is then redone); at the exact one,
    // value * inv_scale may exceed 127 by a rounding error only.
    const float level = WithinLevels(value * inv_scale);
    // roundf: lroundf's halves away from zero, and one VRINTA instruction on an FPv5 FPU (M7, M55)
    // where lroundf is a library call. Through int32: GCC narrows a float to int8 through the stack.
    data[i] = static_cast<int8_t>(static_cast<int32_t>(roundf(level)));
  }
};

struct MaxStore {
  float max_abs;
  void operator()(int32_t, float value) { max_abs = LargerMagnitude(max_abs, value); }
};

// The scale a written gradient is measured against (tt_grad_out): the exact scale of the gradient g
// the kernel reads (max|g| / 127), 1 when it is float32. Every backward op is linear in the gradient
// it reads, so max|written| / reference depends on the step's activations and the direction of the
// incoming gradient, not on its size: at batch 1 that size follows the sample's loss and changes from
// one step to the next far more than the ratio does. An int8 g's own scale is that exact scale only
// when its writer took a second pass: levels that stood at a predicted scale top out anywhere in
// [44.5, 127] (about 90 typically, 127 after a second pass), so a gain measured against g.scale took
// that spread on too, and one gradient's miss moved the gains of the writers downstream of it.
// g.top_level, when the caller measured it, takes it out.
inline float GradReference(const tt_grad_in& g) {
  if (g.type != TT_GRAD_S8) return 1.0f;
  return g.top_level > 0 ? g.scale * (static_cast<float>(g.top_level) * (1.0f / 127.0f)) : g.scale;
}

// Delayed scaling (tt_grad_out). The history's gain predicts this step's max|g| / reference: an
// exponential moving average (weight kGainSmoothing on the newest step) of the gains of the steps
// whose gradient was not all 0. At batch 1 each step's gain varies with its sample around a level
// that drifts slowly, so the average predicts it better than the last step alone: over 300 digits
// steps, 78% of the gains land in a one-bit window around it, 65% around the last step's.
// The single pass quantizes at kHeadroom times the predicted maximum, and its levels stand when the
// step's top level lands in [kLowestTopLevel, 127]: no value saturated, and the quantization step is
// at most 127 / kLowestTopLevel (2.8, 1.5 bits) times the exact scale's. Otherwise a second pass
// quantizes at the exact scale, which the first one measured. A step whose values are all 0 has
// exact levels (0) at any scale, so it takes no second pass once the gradient has a history, and it
// leaves the gain as it was.
// Rescaling the stored levels in place instead of a second pass would not help: under-used levels
// hold the coarser step's rounding whatever they are rescaled to, and saturated ones lost their value.
constexpr float kHeadroom = 1.41421356f;
constexpr float kLowestTopLevel = 44.5f;
constexpr float kGainSmoothing = 0.25f;

// The known_max_abs of a writer that cannot tell max|g| before its pass (WriteGradAs).
constexpr float kUnknownMaxAbs = -1.0f;

// Writes a gradient of representation kType described in gather form:
// produce(sink) stores every output element once through sink (GradSink).
// S8 output takes its scale as tt_grad_out describes (reference: GradReference
// of the gradient read). No float scratch buffer of the output's size is ever
// needed: a pass that finds the scale is paid in compute instead, memory over
// compute as an MCU wants. Delayed scaling saves that pass in most steps, and
// a writer that knows max|g| exactly before the pass (known_max_abs >= 0, the
// value its sink will find) needs neither: one pass at the exact scale stores
// the levels a second pass would.
template <tt_grad_type kType, typename Produce>
void WriteGradAs(const tt_grad_out& out, Produce&& produce, float reference = 1.0f,
                 float known_max_abs = kUnknownMaxAbs) {
  if constexpr (kType == TT_GRAD_F32) {
    GradSink<F32Store> sink(F32Store{static_cast<float*>(out.data)});
    produce(sink);
  } else {
    int8_t* data = static_cast<int8_t*>(out.data);
    // One pass storing the levels at `scale`; returns the step's max|g|.
    auto quantize = [&](float scale) {
      GradSink<S8Store> sink(S8Store{data, 1.0f / scale, 0.0f});
      produce(sink);
      return sink.store().max_abs;
    };
    tt_grad_history* history = out.history;
    const float predicted_scale = history != nullptr ? history->gain * reference * kHeadroom / 127.0f : 0.0f;
    const bool predicted = isnormal(predicted_scale);
    // A gain of +0 means there is no step to go by (after allocation or reset): a first pass finds
    // max|g|, a second quantizes at the exact scale, as every step did before delayed scaling. A
    // compile-time estimate of the first scale instead would need representative data the compiler
    // does not have. A gain of -0 means every step so far had all-0 values (a layer whose gradient
    // is always 0): the first pass quantizes at scale 1, the scale of an all-0 gradient, and only
    // a step that is not all 0 takes a second pass.
    const bool all_zero_so_far = history != nullptr && signbit(history->gain);
    float max_abs = 0.0f;
    float scale = 1.0f;
    bool levels_stand = false;
    if (known_max_abs >= 0.0f) {
      max_abs = known_max_abs;
      scale = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
      quantize(scale);
      levels_stand = true;
    } else if (predicted || all_zero_so_far) {
      scale = predicted ? predicted_scale : 1.0f;
      max_abs = quantize(scale);
      const float top_level = max_abs / scale;
      levels_stand = max_abs == 0.0f || (predicted && top_level >= kLowestTopLevel && top_level < 127.5f);
    } else {
      GradSink<MaxStore> sink(MaxStore{0.0f});
      produce(sink);
      max_abs = sink.store().max_abs;
    }
    if (!levels_stand) {
      scale = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
      quantize(scale);
      if (history != nullptr) history->second_passes += 1.0f;
    }
    *out.scale = scale;
    if (history != nullptr) {
      const float gain = max_abs / reference;
      if (max_abs > 0.0f) {
        history->gain = predicted ? history->gain + kGainSmoothing * (gain - history->gain) : gain;
      } else if (!predicted) {
        history->gain = -0.0f;
      }
    }
  }
}

// WriteGradAs for out's representation, chosen at run time.
template <typename Produce>
void WriteGrad(const tt_grad_out& out, Produce&& produce, float reference = 1.0f,
               float known_max_abs = kUnknownMaxAbs) {
  if (out.type == TT_GRAD_F32) {
    WriteGradAs<TT_GRAD_F32>(out, produce, reference);
  } else {
    WriteGradAs<TT_GRAD_S8>(out, produce, reference, known_max_abs);
  }
}

// A kernel reading one gradient and writing another: body(reader, sink) with
// both representations fixed at compile time, as a generated kernel has them.
template <tt_grad_type kIn, tt_grad_type kOut, typename Body>
void WithGradsAs(const tt_grad_in& in, const tt_grad_out& out, Body&& body, float known_max_abs = kUnknownMaxAbs) {
  WriteGradAs<kOut>(out, [&](auto& sink) { body(ReadGradAs<kIn>(in), sink); }, GradReference(in), known_max_abs);
}

// The same with both representations chosen at run time (the generic kernels).
template <typename Body>
void WithGrads(const tt_grad_in& in, const tt_grad_out& out, Body&& body, float known_max_abs = kUnknownMaxAbs) {
  WithGradReader(in, [&](auto reader) {
    WriteGrad(out, [&](auto& sink) { body(reader, sink); }, GradReference(in), known_max_abs);
  });
}

// The shape of an element-wise kernel, whose bodies read only s.count: a
// run-time value in the generic functions, static constexpr in generated ones.
struct CountShape {
  int32_t count;
};

// tt_grad_add's reference: the sum is linear in both gradients, so it is measured against the larger scale.
inline float GradAddReference(const tt_grad_in& a, const tt_grad_in& b) {
  return fmaxf(GradReference(a), GradReference(b));
}

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
  return g != nullptr && g->data != nullptr &&
         (g->type == TT_GRAD_F32 ||
          (g->type == TT_GRAD_S8 && g->scale != nullptr && (g->history == nullptr || g->history->gain >= 0.0f)));
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_GRAD_IO_H_
