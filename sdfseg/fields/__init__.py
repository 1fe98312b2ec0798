"""sdfseg.fields."""
