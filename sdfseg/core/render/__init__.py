"""sdfseg.core.render."""
