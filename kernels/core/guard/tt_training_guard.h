/* Guards for training in the field, portable (no TFLM type): a check that keeps a bad sample out of
 * training, and a divergence guard that tells the firmware when to roll back to its last good
 * checkpoint (kernels/core/checkpoint). The firmware calls them around each training Invoke:
 *
 *   if (tt_sample_check_s8(sample, n, labels, batch, classes, &counts) != TT_SAMPLE_OK) skip;
 *   Invoke();
 *   if (tt_divergence_guard_step(&guard, loss)) tt_checkpoint_restore(...);
 */
#ifndef TINYTRAIN_KERNELS_CORE_GUARD_TT_TRAINING_GUARD_H_
#define TINYTRAIN_KERNELS_CORE_GUARD_TT_TRAINING_GUARD_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What tt_sample_check_s8 found. */
typedef enum {
  TT_SAMPLE_OK = 0,
  TT_SAMPLE_BAD_LABEL = 1, /**< A label outside [0, label_classes): the loss would refuse it. */
  TT_SAMPLE_SATURATED = 2, /**< Every value at an int8 limit (-128 or 127): the quantizer clipped it all. */
} tt_sample_verdict;

/** Samples refused so far, by reason. */
typedef struct {
  uint32_t bad_labels;
  uint32_t saturated;
} tt_sample_counts;

/**
 * Checks one quantized sample and its labels before a training step, and counts a refusal.
 * @param label_classes  labels must lie in [0, label_classes): the class count for softmax
 *                       cross-entropy, 2 for binary cross-entropy; 0 skips the label check (mean
 *                       squared error's label is a target, not a class)
 * @param counts         incremented for a refused sample; may be NULL
 */
tt_sample_verdict tt_sample_check_s8(const int8_t* sample, uint32_t values, const int32_t* labels,
                                     uint32_t num_labels, int32_t label_classes, tt_sample_counts* counts);

/**
 * Divergence guard: a training step is bad when its loss is not finite or above loss_bound; after
 * `patience` bad steps in a row the firmware must roll back to its last good checkpoint.
 * Set loss_bound and patience (>= 1), zero the counters.
 */
typedef struct {
  float loss_bound;
  uint32_t patience;
  uint32_t bad_steps; /**< Bad steps in a row so far. */
  uint32_t rollbacks; /**< Rollbacks asked for so far. */
} tt_divergence_guard;

/** Records one training step's loss. 1: roll back now (the run of bad steps starts over), 0: go on. */
int tt_divergence_guard_step(tt_divergence_guard* guard, float loss);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYTRAIN_KERNELS_CORE_GUARD_TT_TRAINING_GUARD_H_
