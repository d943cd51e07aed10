"""featviz hand-written kernels (installed as featviz.kernels)."""
