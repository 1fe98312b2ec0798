"""The backbone and its rendering: hash-grid encodings, the multi-channel SDF, colour and density
fields (``fields/``), the scene model (``model.py``), ray samplers, volume and surface-first renderers
and the chunked view renderer (``render/``), and the reconstruction losses (``losses.py``). Knows no
lifting method."""
