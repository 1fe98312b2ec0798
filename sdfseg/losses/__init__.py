"""sdfseg.losses."""
