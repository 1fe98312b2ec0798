"""The web viewer of a finished run (viser): ``tools/view.py RUN`` / ``sdfseg-view RUN``."""
