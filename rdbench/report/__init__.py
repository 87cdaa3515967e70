"""Reading a study back from the tracking store: Table 1, Fig. 2 and Fig. 3.

* :mod:`.published` -- Table 1 and Fig. 3 as published (``conf/published.yaml``);
* :mod:`.selection` -- which cell runs: a grid's (children plus reused runs from its
  manifest), the latest grid's, or every cell of an experiment;
* :mod:`.table` -- the cells as a frame, Table 1 (mean and spread over seeds beside the
  paper), Markdown, LaTeX and CSV;
* :mod:`.figures` -- Fig. 2 (R_t over normalised time) and Fig. 3 (final R_t);
* :mod:`.publish` -- a report of a selection: files written, logged to the grid's parent.

The report never imports a system: it reads tags, metrics and series from the store,
and finds controls (``control.<name>.R``) and extra magnitudes from the metric keys,
so a new system or control shows up without a change here.
"""
