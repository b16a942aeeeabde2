r"""Looking inside a trained network (the book's notebooks 01-04): codes, gates, re-rendering, losses.

Every function takes one preprocessed case ``image`` ``(M, D, H, W)`` and zero-pads it at the far end of
each axis to a multiple of 8 (zero is the brain mean after z-scoring); spatial outputs are cropped back,
so voxel ``k`` of a stage-``s`` map covers case voxels ``k 2**s ... (k+1) 2**s - 1``. Symbols:
:math:`c_i` = ``content[s][:, i]``, :math:`g_i` = ``gates[s][i]``, :math:`a_i` = ``appearance[:, i]``.

- :mod:`~mmdis.inspection.padding`: the pad to a multiple of 8 and the crop back;
- :mod:`~mmdis.inspection.encoding`: one case through the encoders;
- :mod:`~mmdis.inspection.gates`: gate maps and their means per tumour region;
- :mod:`~mmdis.inspection.appearance`: appearance codes, their separation, swapping them;
- :mod:`~mmdis.inspection.content`: content codes made comparable across modalities;
- :mod:`~mmdis.inspection.loss_terms`: the terms of the loss for one whole case;
- :mod:`~mmdis.inspection.predictions`: a cached case segmented for named subsets;
- :mod:`~mmdis.inspection.conventions`: the label conventions and the 15 subsets as tables.
"""
