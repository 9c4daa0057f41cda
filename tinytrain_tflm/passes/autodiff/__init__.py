"""Compile-time reverse-mode autodiff over the graph IR.

`rules/` holds one gradient rule per forward op, in one registry; `engine`
walks the forward graph backwards, calls the rules only where a trainable
parameter needs a gradient, and places each optimizer update right after the
last op that reads the parameter's gradient.
"""

from .engine import BackwardBuilder, Grad, build_backward

__all__ = ["BackwardBuilder", "Grad", "build_backward"]
