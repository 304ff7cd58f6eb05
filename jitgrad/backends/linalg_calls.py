"""The call contract of the linear-algebra primitives, declared once for every backend.

Each backend has a library module with one routine per entry (``lapack`` on the
CPU, ``cuda_linalg`` on a GPU) and calls it the same way: on the inputs at
``operands``, each as a stack of matrices (batch axes flattened into one), then
the output stacked with its last ``out_core`` axes as the core, written in
place, then the primitive's bool attrs named in ``flags``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ops import linalg


@dataclass(frozen=True)
class LinalgCall:
    routine: str
    operands: tuple[int, ...]
    out_core: int = 2
    flags: tuple[str, ...] = ()

    def routine_for(self, out, values_only) -> str:
        """eigh and svd whose vectors nothing reads call their values-only variant."""
        return f"{self.routine}_values" if out in values_only else self.routine


LINALG = {
    linalg.lu_p: LinalgCall("lu_factor", (0,)),
    linalg.lu_solve_p: LinalgCall("lu_solve", (0, 2), flags=("trans",)),
    linalg.lu_det_p: LinalgCall("lu_det", (0,), out_core=0),
    linalg.lu_cofactor_p: LinalgCall("lu_cofactor", (0,)),
    linalg.lu_logabsdet_p: LinalgCall("lu_logabsdet", (0,), out_core=0),
    linalg.lu_sign_p: LinalgCall("lu_sign", (0,), out_core=0),
    linalg.cholesky_p: LinalgCall("cholesky", (0,)),
    linalg.triangular_solve_p: LinalgCall("triangular_solve", (0, 1), flags=("lower", "trans")),
    linalg.eigh_p: LinalgCall("eigh", (0,)),
    linalg.svd_p: LinalgCall("svd", (0,)),
    linalg.qr_p: LinalgCall("qr", (0,)),
}
