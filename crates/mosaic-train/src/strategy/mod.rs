//! Training strategies: which parameters train and what extra terms the
//! objective gets.
//!
//! - [`freeze`]: freeze sub-modules by name, LiT (lock one tower);
//! - [`prompt`]: prompt tuning (learnable context tokens, frozen encoders);
//! - [`lora`]: LoRA adapters (train only them, merge them for export);
//! - [`ewc`]: elastic weight consolidation against forgetting;
//! - [`distill`]: knowledge distillation from a teacher.
//!
//! Every strategy works on the named `Var`s of a
//! [`mosaic_models::nn::ParamStore`]: a strategy returns the parameters to
//! hand to the optimiser (the others stay as they are) and/or a
//! differentiable term to add to the loss.

pub mod distill;
pub mod ewc;
pub mod freeze;
pub mod lora;
pub mod prompt;

pub use distill::{distill_cosine, distill_kl, distill_mse};
pub use ewc::Ewc;
pub use freeze::{freeze, lit, select};
pub use lora::{load_base_weights, merge_lora, merge_lora_params, set_lora, trainable_lora_vars};
pub use prompt::{PromptTuning, prompt_tuning};

/// Whether a parameter `name` matches `pattern`: a `*`-wildcard glob over
/// the full name (`*.attn.q.*`, `*norm*`), or — for a pattern without `*`
/// — the name itself or any parameter under it as a module prefix
/// (`encoders.image` matches `encoders.image.patch.weight`).
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern.contains('*') {
        mosaic_models::weights::glob_match(pattern, name)
    } else {
        name == pattern
            || (name.len() > pattern.len()
                && name.starts_with(pattern)
                && name.as_bytes()[pattern.len()] == b'.')
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("encoders.image", "encoders.image.patch.weight"));
        assert!(!matches("encoders.image", "encoders.images.x"));
        assert!(matches(
            "encoders.image.patch.weight",
            "encoders.image.patch.weight"
        ));
        assert!(matches("*norm*", "a.norm1.weight"));
        assert!(matches("*.bias", "a.b.bias"));
        assert!(!matches("*.bias", "a.lora_b"));
        assert!(matches("*logit_scale", "heads.clip.logit_scale"));
    }
}
