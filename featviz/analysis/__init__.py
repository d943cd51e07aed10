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
  feature_space    photos as points in a layer's activation space; neighbours and PCA
  tsne             exact t-SNE for a few hundred points
  dream            DeepDream on a photo, at several scales
  inversion        an image with the same activations as a photo at some layers

The CLI wraps them as ``featviz activations | filters | cam | adversarial | examples |
neighbors | embed | dream | invert``.
"""
