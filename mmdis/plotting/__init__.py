"""Every figure of the package, in one style: functions build and return :class:`matplotlib.figure.Figure`
objects without pyplot's global state (no GUI backend, nothing to close), so they work alike in scripts,
tests and notebooks.

- :mod:`~mmdis.plotting.base`: orientation, colours, the grey-level window, the best slice, saving;
- :mod:`~mmdis.plotting.cases`: a case's four sequences and its labels;
- :mod:`~mmdis.plotting.gates`: gate maps of the gated fusion over a slice;
- :mod:`~mmdis.plotting.predictions`: one case's segmentations (Fig. 2) and reconstructions (Fig. 3b);
- :mod:`~mmdis.plotting.scores`: result tables as heatmaps and bars (Table 2, Fig. 3a, PSNR/SSIM);
- :mod:`~mmdis.plotting.training`: training loss and validation Dice of runs.
"""
