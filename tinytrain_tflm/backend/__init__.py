"""The backend: the IR emitted as a .tflite (emit), and the schema of tinytrain's ops and metadata."""
