"""The registry of primitives: an explicit tuple built from the family modules."""
from . import (collective, control, custom, elementwise, leaf, linalg, loop, mathfuncs, random, reduce, shape,
               sort, window)

PRIMITIVES = (leaf.PRIMITIVES + elementwise.PRIMITIVES + reduce.PRIMITIVES + shape.PRIMITIVES
              + linalg.PRIMITIVES + control.PRIMITIVES + collective.PRIMITIVES + loop.PRIMITIVES
              + custom.PRIMITIVES + random.PRIMITIVES + window.PRIMITIVES + mathfuncs.PRIMITIVES
              + sort.PRIMITIVES)
BY_NAME = {p.name: p for p in PRIMITIVES}
assert len(BY_NAME) == len(PRIMITIVES), "two primitives share a name"
