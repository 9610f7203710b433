"""Tools built on fastnn's public API, kept out of the engine's core modules.

- ``fastnn.tools.bench``: the end-to-end benchmark harness (``fastnn bench``, bench/e2e.py).
- ``fastnn.tools.landscapes``: two-parameter test functions and the path plots of the lectures'
  optimizer-landscape demo (``fastnn landscape``; also reachable as ``fastnn.landscapes``).

Nothing in the engine (layers, model, optimizers, Trainer, backends) imports this package.
"""
