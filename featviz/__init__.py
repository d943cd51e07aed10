"""featviz."""
__version__ = "0.1.0"
