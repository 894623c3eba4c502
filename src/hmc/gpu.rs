//! GPU HMC transitions (placeholder until the fused kernel lands).
