// Stable log(1 + e^x) and 1 / (1 + e^-x) in f32, shared by the HMM kernels (the twins of
// crate::math::softplus and sigmoid).

fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
