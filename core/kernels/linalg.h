/* linalg.h: dense symmetric positive definite algebra through OpenBLAS's LAPACK
 * (dpotrf, dpotri): the Cholesky factor and the inverse that OBS-style pruning
 * (SparseGPT) needs, offered to plugins as host services. */
#ifndef PRUNUS_LINALG_H
#define PRUNUS_LINALG_H

/* a (n, n) row-major, symmetric positive definite (both triangles set): on success
 * a = U, upper triangular with A = U^T U, the strict lower triangle zeroed, and 0 is
 * returned. When A is not positive definite in double precision: the order k >= 1
 * of the first leading minor that is not, a undefined. */
int prunus_cholesky_upper(int n, double *a);
/* a = A^-1 (both triangles) for a as above; 0, or k as prunus_cholesky_upper. */
int prunus_spd_inverse(int n, double *a);

#endif
