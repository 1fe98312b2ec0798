"""sdfseg.eval."""
