"""sdfseg.core.fields."""
