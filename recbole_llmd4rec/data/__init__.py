"""Data helpers: the converter from the common sequential text format to atomic files."""
