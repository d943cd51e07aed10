"""Counting primitives in a jaxpr, nested ones included (custom_vjp, pjit, scan bodies)."""

import collections

import jax
import jax.extend


def _subjaxprs(eqn):
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v


def primitive_counts(jaxpr) -> collections.Counter:
  """How often each primitive appears in ``jaxpr`` and every jaxpr nested in it."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  counts = collections.Counter()
  for eqn in jaxpr.eqns:
    counts[str(eqn.primitive)] += 1
    for sub in _subjaxprs(eqn):
      counts.update(primitive_counts(sub))
  return counts
