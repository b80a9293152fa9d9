//! Small dense matrices over the scalar field, used only while deriving the
//! constants (never on the hashing path).

use bls12_381::Scalar;
use ff::Field;

/// Row-major square matrix.
pub(super) type Matrix = Vec<Vec<Scalar>>;

/// Inverse of a field element, or zero for zero.
///
/// Every caller passes a value that is provably nonzero (Cauchy
/// denominators, pivots of nonsingular matrices), so the zero case cannot
/// happen; mapping it to zero rather than panicking keeps constant
/// generation infallible, and the known-answer and fast-versus-reference
/// tests cover every supported width, so a violation could not go unnoticed.
pub(super) fn inv(x: Scalar) -> Scalar {
    Option::<Scalar>::from(x.invert()).unwrap_or(Scalar::ZERO)
}

/// The Cauchy MDS matrix `M[i][j] = 1 / (i + (t + j))`, as neptune builds it.
pub(super) fn cauchy_mds(t: usize) -> Matrix {
    (0..t)
        .map(|i| {
            (0..t)
                .map(|j| inv(Scalar::from(i as u64) + Scalar::from((t + j) as u64)))
                .collect()
        })
        .collect()
}

/// The `n` by `n` identity.
pub(super) fn identity(n: usize) -> Matrix {
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| if i == j { Scalar::ONE } else { Scalar::ZERO })
                .collect()
        })
        .collect()
}

/// Matrix product `a * b`.
pub(super) fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    a.iter()
        .map(|row| {
            (0..b[0].len())
                .map(|j| row.iter().zip(b).map(|(x, brow)| *x * brow[j]).sum())
                .collect()
        })
        .collect()
}

/// Matrix times column vector: `out[i] = sum_j m[i][j] * v[j]`.
pub(super) fn apply(m: &Matrix, v: &[Scalar]) -> Vec<Scalar> {
    m.iter()
        .map(|row| row.iter().zip(v).map(|(a, b)| *a * b).sum())
        .collect()
}

/// Row vector times matrix: `out[j] = sum_i v[i] * m[i][j]`.
pub(super) fn apply_left(v: &[Scalar], m: &Matrix) -> Vec<Scalar> {
    (0..m[0].len())
        .map(|j| v.iter().zip(m).map(|(a, row)| *a * row[j]).sum())
        .collect()
}

/// Gauss-Jordan inverse with row pivoting. The matrices passed in are
/// Cauchy matrices, which are always nonsingular.
pub(super) fn invert(m: &Matrix) -> Matrix {
    let n = m.len();
    let mut a = m.clone();
    let mut out = identity(n);
    for col in 0..n {
        // A nonsingular matrix always has a nonzero entry at or below the
        // diagonal in this column.
        if let Some(p) = (col..n).find(|&r| !bool::from(a[r][col].is_zero())) {
            a.swap(col, p);
            out.swap(col, p);
        }
        let scale = inv(a[col][col]);
        for j in 0..n {
            a[col][j] *= scale;
            out[col][j] *= scale;
        }
        for r in 0..n {
            if r == col {
                continue;
            }
            let factor = a[r][col];
            if bool::from(factor.is_zero()) {
                continue;
            }
            for j in 0..n {
                let da = factor * a[col][j];
                let dout = factor * out[col][j];
                a[r][j] -= da;
                out[r][j] -= dout;
            }
        }
    }
    out
}
