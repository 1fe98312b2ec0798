"""sdfseg.export."""
