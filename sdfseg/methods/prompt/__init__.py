"""SANeRF-HQ's prompted object field on a trained run (``tools/prompt.py``): ``field.py``."""
