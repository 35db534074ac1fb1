//! Zero-shot image classification with an image–text model (CLIP, SigLIP):
//! labels become prompts through templates, prompts become class
//! embeddings (averaged over templates: CLIP's prompt ensembling), and an
//! image's probabilities come from its similarity to each class.

use std::path::Path;

use candle_core::{DType, Tensor};
use mosaic_data::image::{DecodeOptions, ImageProcessor};
use mosaic_data::text::{Padding, TextConfig, TextTokenizer};

use crate::error::{Error, Result};
use crate::pretrained::bert::l2_normalize;
use crate::pretrained::{ClipModel, SiglipModel, read_model_type};

/// transformers' `zero-shot-image-classification` pipeline default.
pub const DEFAULT_TEMPLATE: &str = "This is a photo of {}.";

/// An image–text model usable for zero-shot classification.
#[derive(Debug)]
pub enum ImageTextModel {
    /// CLIP / OpenCLIP (softmax over labels).
    Clip(ClipModel),
    /// SigLIP (an independent sigmoid per label).
    Siglip(SiglipModel),
}

impl ImageTextModel {
    /// Loads the model a folder's `config.json` names (`clip`, `siglip`).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        match read_model_type(dir)?.as_str() {
            "clip" => Ok(ImageTextModel::Clip(ClipModel::from_pretrained(dir)?)),
            "siglip" => Ok(ImageTextModel::Siglip(SiglipModel::from_pretrained(dir)?)),
            other => Err(Error::Config {
                source_name: dir.join("config.json").display().to_string(),
                message: format!(
                    "key `model_type`: `{other}` is not an image–text model; zero-shot supports clip, siglip"
                ),
            }),
        }
    }

    /// Projected, L2-normalised text embeddings `[B, P]`.
    pub fn text_embeds(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let e = match self {
            ImageTextModel::Clip(m) => m.text_embeds(ids, Some(mask))?,
            // SigLIP is trained without a text attention mask (padding to a
            // fixed length instead); its pipeline passes none.
            ImageTextModel::Siglip(m) => m.text_embeds(ids)?,
        };
        l2_normalize(&e)
    }

    /// Projected, L2-normalised image embeddings `[B, P]`.
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        let e = match self {
            ImageTextModel::Clip(m) => m.image_embeds(pixels)?,
            ImageTextModel::Siglip(m) => m.image_embeds(pixels)?,
        };
        l2_normalize(&e)
    }

    /// Text padding the model was trained with.
    fn text_config(&self) -> TextConfig {
        match self {
            ImageTextModel::Clip(m) => TextConfig {
                max_length: Some(m.config().text_config.max_position_embeddings),
                padding: Padding::Longest,
                add_special_tokens: true,
            },
            ImageTextModel::Siglip(m) => {
                let n = m.config().text_config.max_position_embeddings;
                TextConfig {
                    max_length: Some(n),
                    padding: Padding::Fixed(n),
                    add_special_tokens: true,
                }
            }
        }
    }

    /// Logits `[B_img, L]` → probabilities: softmax over labels (CLIP) or a
    /// sigmoid per label (SigLIP).
    fn probabilities(&self, cos: &Tensor) -> Result<Tensor> {
        match self {
            ImageTextModel::Clip(m) => {
                crate::nn::softmax_last_dim(&(cos * m.logit_scale()?.exp())?)
            }
            ImageTextModel::Siglip(m) => {
                let z = ((cos * m.logit_scale()?.exp())? + m.logit_bias()?)?;
                Ok(candle_core::Tensor::ones_like(&z)?.broadcast_div(&(z.neg()?.exp()? + 1.0)?)?)
            }
        }
    }
}

/// A model with its tokenizer and image processor, ready to classify.
#[derive(Debug)]
pub struct ZeroShotClassifier {
    /// The image–text model.
    pub model: ImageTextModel,
    tokenizer: TextTokenizer,
    processor: ImageProcessor,
}

/// Class embeddings for a label set.
#[derive(Debug, Clone)]
pub struct ClassEmbeddings {
    /// The labels, in order.
    pub labels: Vec<String>,
    /// `[L, P]`, unit rows.
    pub embeddings: Tensor,
}

impl ZeroShotClassifier {
    /// Loads `config.json`, the weights, `tokenizer.json` and
    /// `preprocessor_config.json` of a Hugging Face folder.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let model = ImageTextModel::from_pretrained(dir)?;
        let mut tokenizer =
            TextTokenizer::from_file(&dir.join("tokenizer.json"), TextConfig::default())?;
        tokenizer.set_config(model.text_config())?;
        let processor = ImageProcessor::from_pretrained(&dir.join("preprocessor_config.json"))?;
        Ok(ZeroShotClassifier {
            model,
            tokenizer,
            processor,
        })
    }

    /// The image processor (for decoding and preprocessing).
    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    /// One embedding per label: each template (`{}` marks the label) is
    /// filled in, embedded and normalised; a label's embedding is the
    /// re-normalised mean over its templates (one template: just its
    /// normalised embedding).
    pub fn class_embeddings<S: AsRef<str>, T: AsRef<str>>(
        &self,
        labels: &[S],
        templates: &[T],
    ) -> Result<ClassEmbeddings> {
        check_labels(labels)?;
        if templates.is_empty() {
            return Err(Error::InvalidInput {
                what: "templates".into(),
                message: "at least one template is needed".into(),
            });
        }
        for t in templates {
            let t = t.as_ref();
            if t.matches("{}").count() != 1 {
                return Err(Error::InvalidInput {
                    what: "template".into(),
                    message: format!(
                        "`{t}` must contain `{{}}` (where the label goes) exactly once"
                    ),
                });
            }
        }
        let mut rows = Vec::with_capacity(labels.len());
        for label in labels {
            let prompts: Vec<String> = templates
                .iter()
                .map(|t| t.as_ref().replacen("{}", label.as_ref(), 1))
                .collect();
            let batch = self.tokenizer.encode_batch(&prompts)?;
            rows.push(self.model.text_embeds(&batch.ids, &batch.attention_mask)?);
        }
        Ok(ClassEmbeddings {
            labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
            embeddings: ensemble_templates(&Tensor::cat(&rows, 0)?, labels.len())?,
        })
    }

    /// Probabilities `[B, L]` of preprocessed images `[B, 3, S, S]`.
    pub fn classify_pixels(
        &self,
        pixels: &Tensor,
        classes: &ClassEmbeddings,
    ) -> Result<Vec<Vec<f32>>> {
        let img = self.model.image_embeds(pixels)?;
        let cos = img.matmul(&classes.embeddings.t()?)?;
        Ok(self
            .model
            .probabilities(&cos)?
            .to_dtype(DType::F32)?
            .to_vec2()?)
    }

    /// Decodes, preprocesses and classifies image files.
    pub fn classify_files(
        &self,
        paths: &[&Path],
        classes: &ClassEmbeddings,
    ) -> Result<Vec<Vec<f32>>> {
        let decode = DecodeOptions::default();
        let images = paths
            .iter()
            .map(|p| mosaic_data::image::load_image(p, &decode))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let pixels = self.processor.preprocess_batch(&images)?;
        self.classify_pixels(&pixels, classes)
    }
}

fn check_labels<S: AsRef<str>>(labels: &[S]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::InvalidInput {
            what: "labels".into(),
            message: "at least one label is needed".into(),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for l in labels {
        let l = l.as_ref();
        if l.trim().is_empty() {
            return Err(Error::InvalidInput {
                what: "labels".into(),
                message: "a label is empty".into(),
            });
        }
        if !seen.insert(l) {
            return Err(Error::InvalidInput {
                what: "labels".into(),
                message: format!("label `{l}` is given twice"),
            });
        }
    }
    Ok(())
}

/// Class embeddings from prompt embeddings: `per_prompt` `[C·T, P]` holds
/// `T` unit-norm template embeddings per class, class-major; a class's
/// embedding is the re-normalised mean of its `T` (prompt ensembling, as
/// CLIP's zero-shot evaluation does). The one implementation behind
/// [`ZeroShotClassifier`], `mosaic eval model`, the quickstart and the
/// examples.
pub fn ensemble_templates(per_prompt: &Tensor, classes: usize) -> Result<Tensor> {
    let (n, p) = per_prompt.dims2()?;
    if classes == 0 || n % classes != 0 {
        return Err(Error::InvalidInput {
            what: "prompt embeddings".into(),
            message: format!("{n} rows do not split into {classes} classes"),
        });
    }
    l2_normalize(&per_prompt.reshape((classes, n / classes, p))?.mean(1)?)
}

/// The best class row per image: `argmax(image · classᵀ)`.
pub fn predict(image_emb: &Tensor, class_emb: &Tensor) -> Result<Vec<u32>> {
    Ok(image_emb
        .matmul(&class_emb.t()?)?
        .argmax(candle_core::D::Minus1)?
        .to_vec1()?)
}

/// Top-1 accuracy of [`predict`] against `labels`; `class_ids[k]` is the
/// label of class row `k` (row index itself when `None`).
pub fn top1_accuracy(
    image_emb: &Tensor,
    class_emb: &Tensor,
    labels: &[u32],
    class_ids: Option<&[u32]>,
) -> Result<f64> {
    let pred = predict(image_emb, class_emb)?;
    if pred.len() != labels.len() {
        return Err(Error::InvalidInput {
            what: "labels".into(),
            message: format!("{} labels for {} images", labels.len(), pred.len()),
        });
    }
    let hits = pred
        .iter()
        .zip(labels)
        .filter(|(p, l)| class_ids.map_or(**p, |ids| ids[**p as usize]) == **l)
        .count();
    Ok(hits as f64 / labels.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn templates_ensemble_and_accuracy_map_rows_to_labels() {
        // Two classes × two templates, class-major, unit rows.
        let per_prompt = Tensor::new(
            &[[1f32, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, -1.0]],
            &Device::Cpu,
        )
        .unwrap();
        let classes = ensemble_templates(&per_prompt, 2).unwrap();
        let c: Vec<Vec<f32>> = classes.to_vec2().unwrap();
        let n = (1.6f32 * 1.6 + 0.8 * 0.8).sqrt();
        assert!((c[0][0] - 1.6 / n).abs() < 1e-6 && (c[0][1] - 0.8 / n).abs() < 1e-6);
        // The second class's templates cancel: its mean is zero, kept finite.
        assert!(c[1].iter().all(|v| v.is_finite()));
        assert!(ensemble_templates(&per_prompt, 3).is_err());

        let class_emb = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let images = Tensor::new(&[[0.9f32, 0.1], [0.2, 0.7], [0.1, 0.3]], &Device::Cpu).unwrap();
        assert_eq!(predict(&images, &class_emb).unwrap(), vec![0, 1, 1]);
        let acc = top1_accuracy(&images, &class_emb, &[0, 1, 0], None).unwrap();
        assert!((acc - 2.0 / 3.0).abs() < 1e-12);
        // Rows stand for labels 7 and 3.
        let acc = top1_accuracy(&images, &class_emb, &[7, 3, 3], Some(&[7, 3])).unwrap();
        assert_eq!(acc, 1.0);
        assert!(top1_accuracy(&images, &class_emb, &[0, 1], None).is_err());
    }
}
