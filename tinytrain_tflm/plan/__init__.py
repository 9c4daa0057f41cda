"""The memory plan: the arena TFLM lays out for a graph, its estimate, and the offline plan."""
