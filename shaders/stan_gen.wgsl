// A Stan program's log density and gradient as straight-line code generated from its
// evaluation plan (src/stan/codegen.rs), one invocation per chain: the twin of
// src/stan/plan.rs. The generator fills GLOBALS and BODY; the host prepends D, NACC,
// common/logistic.wgsl and common/stan.wgsl. BODY runs the values several terms read
// (shared values) forward as `let`s, those that terms read also into scratch storage
// (`sv`), then each shape of terms as a loop over its terms (each term forward, then
// straight back with its values in registers, adding to the shared values' adjoints in
// storage, `add_sa`), then the shared values back into `grad`. The data
// (the terms' constants and which shared values they read) are the dataset's words, laid
// out by the generator; the code depends only on the program's shapes, so datasets of one
// program share it.

// {GLOBALS}

fn chain_finish(
    c: ptr<function, Chain>,
    theta: ptr<function, array<f32, D>>,
    n_points: u32,
    acc: ptr<function, array<f32, NACC>>,
    grad: ptr<function, array<f32, D>>,
) -> f32 {
    if (!chain_start(c, grad)) {
        return 0.0;
    }
    var lp = 0.0;
    // {BODY}
    return lp;
}
