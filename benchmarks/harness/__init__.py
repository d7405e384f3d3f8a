"""The benchmarks' evaluation harness: every script in benchmarks/ measures through it.

- :mod:`harness.paths`: the datasets folder, the work and results folders, paths as a reader types them;
- :mod:`harness.stats`: the one paired bootstrap (test pieces *and* seeds resampled);
- :mod:`harness.cells`: resumable cells keyed by their settings, the one results JSON format;
- :mod:`harness.tables`: the one Markdown table writer and the planned-question block every page opens with;
- :mod:`harness.data`: dataset splits, class-keeping subsets and labelled test pieces shared by the scripts;
- :mod:`harness.docs`: the blocks of docs/ pages a script writes (between two markers), so no number there is typed.

The scripts put ``benchmarks/`` on ``sys.path`` and ``from harness import ...``.
"""
