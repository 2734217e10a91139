"""cdbench: a reproducibility benchmark for deep-learning change detection.

BSFNet and IFN on CDD and LEVIR-CD, with loss ablations, compared with published numbers.
"""

__version__ = "0.1.0"
