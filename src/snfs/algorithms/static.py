"""Static sparse training: a random mask (uniform or ERK) fixed for all of training."""

from snfs.algorithms import ALGORITHMS
from snfs.algorithms.base import SparseAlgorithm


@ALGORITHMS.register("static")
class StaticSparse(SparseAlgorithm):
    name = "static"
    flops_accounting = "sparse"
    index_space = True  # a fixed mask: nothing to choose after the start
