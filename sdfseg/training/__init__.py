"""Training: the trainer and its one loop (``trainer.py``), the objective that adds the method's loss
terms to the reconstruction losses (``objective.py``), training labels, checkpoints, run directories
and the pipeline that trains and finishes a run. Knows no method by name."""
