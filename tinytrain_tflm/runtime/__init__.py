"""Running a model on the host: the TFLM interpreter with tinytrain's kernels, and the trainer."""
