"""mmdis: robust multimodal brain tumour segmentation via feature disentanglement and gated fusion.

A reproduction of Chen et al., MICCAI 2019, in PyTorch. Subpackages:

- :mod:`mmdis.conventions`: modalities, labels, regions and the 15 modality subsets.
- :mod:`mmdis.data`: readers for BraTS/MSD layouts, preprocessing, the cache, the phantom, datasets.
- :mod:`mmdis.models`: content/appearance encoders, gated fusion, decoders, baselines.
"""

__version__ = "0.1.0"
