"""Models of the plugin: one module per model, named after the lowercased class."""

from recbole_llmd4rec.model.e4srec import E4SRec
from recbole_llmd4rec.model.llmd4rec import LLMD4Rec
from recbole_llmd4rec.model.sasrecd import SASRecD

__all__ = ["E4SRec", "LLMD4Rec", "SASRecD"]
