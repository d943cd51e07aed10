"""The classic interpretability techniques, each a module of plain functions.

Every function takes a :class:`featviz.model.Model` and images ``(B, H, W, C)`` in
``[0, 1]`` (RGB or greyscale, as ``model.spec.channels`` says), batches over images
and units, and runs jitted; the figures they feed are drawn with PIL + NumPy. The jitted
helpers take ``(model, images, ...)``, the model as one pytree argument, and reach the
network only through ``model.activations`` (resize, value range, normalisation, forward).

Photos come from :mod:`featviz.photos`. Modules (import them directly; this package imports
nothing):

  predictions      top-k classes and their softmax probabilities, with label names
  figures          colour maps, heat-map overlays, bar charts and captioned panels
  layer_grad       gradients of a class logit with respect to any named layer
  activation_maps  every channel of a layer for one image; per-layer sparsity
  filters          first-convolution kernels as tiles; optimized filter images
  cam              CAM, Grad-CAM, guided backprop, guided Grad-CAM, deconvnet
  adversarial      FGSM and PGD (L-inf), targeted and untargeted
  dataset_examples the photos, and patches of photos, that excite a unit most
  receptive_field  which input pixels a unit depends on, read off the architecture
  feature_space    photos as points in a layer's activation space; neighbours, PCA, t-SNE
                   (scikit-learn's)
  dream            DeepDream on a photo, at several scales
  inversion        an image with the same activations as a photo at some layers
  neuron_groups    NMF of a photo's activations into groups, each direction rendered (Olah
                   et al. 2018, "The Building Blocks of Interpretability")
  atlas            activation atlas: many photos' activations laid out, a grid of cells each
                   rendered, all in one batch; class activation atlas (Carter et al. 2019)
  attribution      gradient x activation of one layer for a class or a later unit: spatial,
                   per channel, per neuron group (the Building Blocks)

The CLI wraps them as ``featviz activations | filters | cam | adversarial | examples |
neighbors | embed | dream | invert | groups | atlas | attribution``.
"""
