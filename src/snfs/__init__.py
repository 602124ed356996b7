"""snfs: a reproduction of "Sparse Networks from Scratch" (Dettmers & Zettlemoyer, 2019)."""

__version__ = "0.1.0"
