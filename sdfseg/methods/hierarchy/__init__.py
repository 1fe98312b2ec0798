"""The hierarchical feature head (OmniSeg3D / ultrametric feature fields, ``features.*``): the add-on
any method carries (``addon.py``), its per-batch supervision (``supervision.py``), losses
(``losses.py``), the head-only stage on a finished run (``stage.py``), opening a run's head and
rendering features (``run.py``) and the queries (``query.py``)."""
