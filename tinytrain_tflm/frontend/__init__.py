"""The frontend: a .tflite read into the IR (read, ir), and Keras models converted to int8 (convert)."""
