/* linalg.c: the Cholesky factor and the inverse of a symmetric positive definite
 * matrix through OpenBLAS's LAPACK (Fortran entry points: Debian's libopenblas has
 * no LAPACKE). Row-major A is its own column-major transpose, so LAPACK's lower
 * factor L (A = L L^T, column-major) is, read row-major, the upper U = L^T. */
#include "linalg.h"

#include <stddef.h>

/* LAPACK's Fortran interface (32-bit integers: OpenBLAS built without INTERFACE64).
 * The trailing size_t is gfortran's hidden length of the character argument; the C
 * implementations ignore it. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

/* LAPACK leaves the other triangle as it was: zero it (factor) or mirror (inverse). */
static void zero_lower(int n, double *a) {
  for (int i = 1; i < n; i++)
    for (int j = 0; j < i; j++) a[(size_t)i * n + j] = 0.0;
}

static void mirror_upper(int n, double *a) {
  for (int i = 1; i < n; i++)
    for (int j = 0; j < i; j++) a[(size_t)i * n + j] = a[(size_t)j * n + i];
}

int prunus_cholesky_upper(int n, double *a) {
  if (n <= 0) return 0;
  int info = 0, lda = n;
  dpotrf_("L", &n, a, &lda, &info, 1);
  if (info != 0) return info > 0 ? info : 1;
  zero_lower(n, a);
  return 0;
}

int prunus_spd_inverse(int n, double *a) {
  if (n <= 0) return 0;
  int info = 0, lda = n;
  dpotrf_("L", &n, a, &lda, &info, 1);
  if (info != 0) return info > 0 ? info : 1;
  dpotri_("L", &n, a, &lda, &info, 1);
  if (info != 0) return info > 0 ? info : 1;
  mirror_upper(n, a);
  return 0;
}
