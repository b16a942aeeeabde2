"""Readers for the dataset layouts of the field, detected automatically from a folder.

=============  ======================================================================  ==========
layout         files                                                                   labels
=============  ======================================================================  ==========
``brats2021``  ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (BraTS 2018-2021)       0,1,2,4
``brats2023``  ``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (BraTS 2023 GLI)         0,1,2,3
``msd``        ``imagesTr/<case>.nii.gz`` 4-D (FLAIR, T1w, T1gd, T2w), ``labelsTr/``   0,1,2,3
``brats2015``  ``[HGG|LGG/]<case>/VSD.Brain.XX.O.MR_<mod>.<id>/...mha`` and ``...OT``  0..4
``authors``    ``[group/]<case>/{Flair,T1,T1c,T2}_subtrMeanDivStd.nii.gz``,            0..4
               ``brainmask.nii.gz`` and ``OTMultiClass.nii.gz``
=============  ======================================================================  ==========

Each layout is one :class:`~mmdis.data.layouts.specs.LayoutSpec` in
:data:`~mmdis.data.layouts.specs.SPECS`; :mod:`~mmdis.data.layouts.registry` looks them up and
:mod:`~mmdis.data.layouts.walk` walks the folders for all of them.

``.nii`` is accepted wherever ``.nii.gz`` is. :func:`discover_cases` lists the files of every case (a
missing modality file simply leaves a gap, a missing label file makes the case unlabelled);
:func:`read_case` loads and validates one case into a :class:`~mmdis.data.io.RawCase` with canonical
labels (see :mod:`mmdis.conventions`).

The ``authors`` layout is the one the paper's authors' code reads (BraTS 2015 as preprocessed for
DeepMedic): every image is already z-scored within the brain (its background holds the volume's minimum,
not 0), so :func:`read_case` returns it with ``zscored=True`` and the shipped ``brainmask`` as the brain
mask, and no second z-scoring happens. Any non-empty subset of the four modalities may be present; the
label is numbered as in BraTS 2015.
"""

from mmdis.data.layouts.read import load_dataset, read_case
from mmdis.data.layouts.registry import LAYOUTS, REGISTRY, detect_layout, discover_cases, get_layout
from mmdis.data.layouts.specs import SPECS, LayoutSpec
from mmdis.data.layouts.walk import CaseFiles

__all__ = ["LAYOUTS", "REGISTRY", "SPECS", "CaseFiles", "LayoutSpec", "detect_layout", "discover_cases",
           "get_layout", "load_dataset", "read_case"]
