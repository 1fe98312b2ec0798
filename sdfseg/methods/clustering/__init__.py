"""ClusteringSDF (``train.method: clustering``): the method (``method.py``), its losses and the
ObjectSDF++ terms the baselines reuse (``losses.py``), the channels at the end of a run: classes,
merged pieces, the ownership vote (``channels.py``, ``ownership.py``)."""
