"""Models of the plugin: one module per model, named after the lowercased class."""

from recbole_llmd4rec.model.sasrecd import SASRecD

__all__ = ["SASRecD"]
