// The Arduino_TensorFlowLite library's umbrella header, empty on x86: the sketch includes TFLM's headers itself.
