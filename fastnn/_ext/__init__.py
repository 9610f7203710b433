"""Compiled CPU kernels (Cython, built from csrc/ by setup.py).

One extension per csrc/<name>.pyx: blas (the GEMM route into NumPy's OpenBLAS), activations,
dense, losses, optim and memory (row gathers). Only fastnn.backends.cpu calls them: it checks
the arrays, and the kernels loop over them without checks.
"""
