"""sdfseg.render."""
