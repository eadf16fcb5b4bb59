"""sslspec: a declarative experiment language for the theory of self-supervised learning.

The front end (this package) never imports torch: parse -> check -> lower to a Plan. The
PyTorch back end is the separate top-level package `runtime`.
"""

__version__ = "0.1.0"
