"""Models of the plugin: one module per model, named after the lowercased class."""

__all__ = []
