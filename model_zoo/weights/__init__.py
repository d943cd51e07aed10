"""Weights that featviz's own scripts trained, shipped as package data (``mnist_cnn.npz`` and its
record, from ``featviz.zoo.train_mnist``). A package so that setuptools installs the folder
without warning that an importable folder is missing from ``packages``."""
