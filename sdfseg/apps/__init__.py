"""Application code of the command-line tools (``tools/``): benchmarks, the quality benchmark, the
hierarchy query tool and the shared CLI options."""
