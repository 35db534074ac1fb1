//! NumPy-compatible reductions, so that means over metric values round
//! exactly as the NumPy references do.

/// `np.add.reduce` of a contiguous f64 array: NumPy's pairwise summation
/// (blocks of 128, eight accumulators, halves split on multiples of 8).
pub fn np_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

/// `np.mean` of a contiguous f64 array (NaN when empty, like NumPy).
pub fn np_mean(a: &[f64]) -> f64 {
    np_sum(a) / a.len() as f64
}

/// `np.median` (mean of the two middle values for an even count).
pub fn np_median(a: &[f64]) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    let mut v = a.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        np_mean(&[v[n / 2 - 1], v[n / 2]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_matches_exact_sums() {
        let v: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(np_sum(&v), 499500.0);
        assert_eq!(np_median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
