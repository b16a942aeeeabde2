"""Machine tooling around :mod:`mmdis`, kept out of the teaching package: ``mmdis bench`` (how fast this
machine trains and evaluates RobustSeg, printed as a table) and ``mmdis summary`` (parameters and FLOPs of
every model variant).

These modules live in the source checkout, not in the installed package; ``mmdis bench`` and
``mmdis summary`` import them from there.

=============================  =====================================================================
module                         what
=============================  =====================================================================
:mod:`benchmarks.flops`        FLOP counting, and the parameters and FLOPs of each variant (summary)
:mod:`benchmarks.table`        a row of the table, its verdict against the issue's targets, the table
:mod:`benchmarks.timing`       fastest-of-repetitions timing, progress messages
:mod:`benchmarks.steps`        part 1 (training steps) and part 2 (convolution throughput)
:mod:`benchmarks.evaluation`   part 3: the 15-subset evaluation against 15 independent passes
:mod:`benchmarks.loader`       part 4: the data loader's throughput
:mod:`benchmarks.native`       one case segmented on its own grid
:mod:`benchmarks.run`          :func:`~benchmarks.run.run_benchmarks`, the whole table
=============================  =====================================================================

The numbers are read, never asserted (timings depend on the machine and its load). Every row has a
quantity, a value, a unit, the target the issue set for it where it set one, and a verdict: ``meets``,
``misses`` or ``n/a`` (no target, or not measurable on this device).

Times are the fastest of the repetitions that fit in ``seconds`` after a warm-up, as :mod:`timeit`
advises (the slower ones were slowed by something else, e.g. other processes on a shared machine); the
evaluation passes run once each. On a CPU that other processes also use, ``threads=1`` can be many times
faster than one thread per core.

Peak memory is read by :class:`mmdis.runtime.memory.PeakMemory`: on CUDA,
``torch.cuda.max_memory_allocated`` above what was allocated before the model was built; on the CPU, the
rise of the process's peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs`` after
``malloc_trim``) above the resident set before the model was built; where ``/proc`` cannot be reset, the
rise of ``ru_maxrss`` (a lower bound, 0 when an earlier measurement had already raised the peak higher).
"""
