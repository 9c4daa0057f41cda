// The parts of the TFLM kernel ABI that tinytrain's glue uses, declared for
// the host build against the pinned tflite-micro wheel (TFLM 1fae604, x86-64,
// TF_LITE_STATIC_MEMORY). Written from the layout facts measured on that build
// (shared BRIEF section 2); every offset the glue depends on is checked below.
// A firmware build never sees this file: tflm_api.h includes the real headers.
#ifndef TINYTRAIN_KERNELS_TFLM_TFLM_ABI_H_
#define TINYTRAIN_KERNELS_TFLM_TFLM_ABI_H_

#include <stddef.h>
#include <stdint.h>

extern "C" {

typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

// Only the element types the kernels accept; the values are TFLite's.
typedef enum {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt8 = 9,
} TfLiteType;

typedef enum { kTfLiteNoQuantization = 0, kTfLiteAffineQuantization = 1 } TfLiteQuantizationType;

// Only the allocation the glue tests for (and "none"); the values are TFLite's.
// The underlying type is fixed (the one GCC gives TFLite's enum) because the
// wheel also stores values not declared here, such as kTfLiteArenaRw (2).
typedef enum TfLiteAllocationType : unsigned int { kTfLiteMemNone = 0, kTfLiteMmapRo = 1 } TfLiteAllocationType;

typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;

typedef struct TfLiteFloatArray {
  int size;
  float data[];
} TfLiteFloatArray;

typedef struct {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef struct TfLiteQuantization {
  TfLiteQuantizationType type;
  void* params;  // TfLiteAffineQuantization* when type is affine.
} TfLiteQuantization;

typedef struct TfLiteAffineQuantization {
  TfLiteFloatArray* scale;
  TfLiteIntArray* zero_point;
  int32_t quantized_dimension;
} TfLiteAffineQuantization;

typedef union TfLitePtrUnion {
  int32_t* i32;
  float* f;
  uint8_t* uint8;
  int8_t* int8;
  void* data;
} TfLitePtrUnion;

typedef struct TfLiteTensor {
  TfLiteQuantization quantization;
  TfLiteQuantizationParams params;
  TfLitePtrUnion data;
  const TfLiteIntArray* dims;
  size_t bytes;
  TfLiteType type;
  TfLiteAllocationType allocation_type;
  bool is_variable;
} TfLiteTensor;

typedef struct TfLiteEvalTensor {
  TfLitePtrUnion data;
  TfLiteIntArray* dims;
  TfLiteType type;
} TfLiteEvalTensor;

typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
} TfLiteNode;

// Members the glue never touches are kept as same-sized placeholders.
typedef struct TfLiteContext {
  size_t tensors_size;
  void* unused_get_execution_plan;
  TfLiteTensor* tensors;
  void* impl_;
  void* unused_resize_tensor;
  void (*ReportError)(struct TfLiteContext* context, const char* format, ...);
  void* unused_8_words[8];
  void* (*AllocatePersistentBuffer)(struct TfLiteContext* context, size_t bytes);
  void* unused_allocate_buffer_for_eval;
  TfLiteStatus (*RequestScratchBufferInArena)(struct TfLiteContext* context, size_t bytes,
                                              int* buffer_index);
  void* (*GetScratchBuffer)(struct TfLiteContext* context, int buffer_index);
  void* unused_2_words[2];
  TfLiteTensor* (*GetTensor)(const struct TfLiteContext* context, int tensor_index);
  TfLiteEvalTensor* (*GetEvalTensor)(const struct TfLiteContext* context, int tensor_index);
} TfLiteContext;

}  // extern "C"

struct TFLMRegistration {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
  void (*reset)(TfLiteContext* context, void* buffer);
  int32_t builtin_code;
  const char* custom_name;
};

namespace tflite {

// Virtual slots in TFLM's order, through GetEvalTensor (slot 9 counting the
// two destructor entries); later slots exist but are never called from here.
// Never instantiated: calls go through the interpreter's own vtable.
class MicroContext {
 public:
  virtual ~MicroContext() = default;
  virtual void* AllocatePersistentBuffer(size_t bytes) = 0;
  virtual TfLiteStatus RequestScratchBufferInArena(size_t bytes, int* buffer_index) = 0;
  virtual void* GetScratchBuffer(int buffer_index) = 0;
  virtual TfLiteTensor* AllocateTempTfLiteTensor(int tensor_index) = 0;
  virtual void DeallocateTempTfLiteTensor(TfLiteTensor* tensor) = 0;
  virtual uint8_t* AllocateTempBuffer(size_t size, size_t alignment) = 0;
  virtual void DeallocateTempBuffer(uint8_t* buffer) = 0;
  virtual TfLiteEvalTensor* GetEvalTensor(int tensor_index) = 0;
};

inline MicroContext* GetMicroContext(const TfLiteContext* context) {
  return static_cast<MicroContext*>(context->impl_);
}

}  // namespace tflite

static_assert(sizeof(void*) == 8, "the host ABI describes the x86-64 wheel only");
static_assert(offsetof(TfLiteContext, impl_) == 24, "TfLiteContext layout");
static_assert(offsetof(TfLiteContext, ReportError) == 40, "TfLiteContext layout");
static_assert(offsetof(TfLiteContext, AllocatePersistentBuffer) == 112, "TfLiteContext layout");
static_assert(offsetof(TfLiteContext, RequestScratchBufferInArena) == 128, "TfLiteContext layout");
static_assert(offsetof(TfLiteContext, GetScratchBuffer) == 136, "TfLiteContext layout");
static_assert(offsetof(TfLiteContext, GetTensor) == 160, "TfLiteContext layout");
static_assert(offsetof(TfLiteContext, GetEvalTensor) == 168, "TfLiteContext layout");
static_assert(offsetof(TfLiteNode, user_data) == 24, "TfLiteNode layout");
static_assert(offsetof(TfLiteNode, custom_initial_data) == 40, "TfLiteNode layout");
static_assert(offsetof(TfLiteNode, custom_initial_data_size) == 48, "TfLiteNode layout");
static_assert(sizeof(TfLiteNode) == 56, "TfLiteNode layout");
static_assert(offsetof(TfLiteEvalTensor, dims) == 8, "TfLiteEvalTensor layout");
static_assert(offsetof(TfLiteEvalTensor, type) == 16, "TfLiteEvalTensor layout");
static_assert(sizeof(TfLiteEvalTensor) == 24, "TfLiteEvalTensor layout");
static_assert(offsetof(TfLiteTensor, params) == 16, "TfLiteTensor layout");
static_assert(offsetof(TfLiteTensor, data) == 24, "TfLiteTensor layout");
static_assert(offsetof(TfLiteTensor, dims) == 32, "TfLiteTensor layout");
static_assert(offsetof(TfLiteTensor, bytes) == 40, "TfLiteTensor layout");
static_assert(offsetof(TfLiteTensor, type) == 48, "TfLiteTensor layout");
static_assert(offsetof(TfLiteTensor, allocation_type) == 52, "TfLiteTensor layout");
static_assert(offsetof(TfLiteTensor, is_variable) == 56, "TfLiteTensor layout");
static_assert(sizeof(TfLiteTensor) == 64, "TfLiteTensor layout");
static_assert(sizeof(TFLMRegistration) == 56, "TFLMRegistration layout");

#endif  // TINYTRAIN_KERNELS_TFLM_TFLM_ABI_H_
