"""paperzoo: research architectures as first-class Hugging Face models.

Importing paperzoo registers every architecture with transformers' Auto classes and every pipeline task, here and
nowhere else.
"""

__version__ = "0.1.0"
