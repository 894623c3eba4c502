//! GPU E-step for batched EM (placeholder while the shader is written).
