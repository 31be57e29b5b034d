"""Config files embedded in the package (read with importlib.resources)."""
