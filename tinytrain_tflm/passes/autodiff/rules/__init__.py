"""The gradient rule registry: one rule per forward op kind.

A rule is `rule(b, op, grad, needs) -> tuple[Grad | None, ...]` with one entry
per forward input of `op`: `b` is the BackwardBuilder that emits ops, `grad`
the gradient of the op's output, `needs[i]` whether input i needs a gradient.
It returns None exactly where no gradient is needed; the engine checks the
count. The formula each rule implements is in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable

GRAD_RULES: dict[str, Callable] = {}
# Ops whose outputs carry no gradient at all (integer shapes, indices): nothing
# downstream of them is ever on a gradient path through them.
NON_DIFFERENTIABLE: set[str] = set()


def grad_rule(*kinds: str) -> Callable[[Callable], Callable]:
    """Registers the decorated function as the gradient rule of these TFLite builtin ops."""

    def register(rule: Callable) -> Callable:
        for kind in kinds:
            if kind in GRAD_RULES:
                raise ValueError(f"two gradient rules for {kind}")
            GRAD_RULES[kind] = rule
        return rule

    return register


def non_differentiable(*kinds: str) -> None:
    """Declares ops whose outputs have no gradient (e.g. SHAPE: an integer description of its input)."""
    NON_DIFFERENTIABLE.update(kinds)


# Importing the rule modules fills GRAD_RULES and NON_DIFFERENTIABLE.
from . import conv, elementwise, fully_connected, pooling, shape  # noqa: E402,F401
