//! The replies service's table of models (issue 17): one [`Model`] per configured provider, in
//! `config.llm.providers` order, each with its fallback chain (core's `fallback::chain`) and its
//! provider's circuit breaker (core's `breaker`, `BreakerLimits::PROVIDER`). A sub-state of
//! [`super::Replies`]: the reply run asks it which models to try and tells it how each attempt
//! ended; it never calls out.

use std::sync::{Arc, Mutex, MutexGuard};

use chatbox_core::breaker::{BreakerLimits, CallOutcome, CircuitBreaker};
use chatbox_core::config::{Config, ProviderConfig, ProviderKind};
use chatbox_core::protocol::ModelInfo;
use chatbox_core::Instant;

use crate::engine::llm::LlmProvider;
use crate::engine::metrics::Metrics;

/// One configured model: what clients see and the provider that serves it.
#[derive(Debug, Clone)]
pub struct Model {
    /// Client-visible id and label.
    pub info: ModelInfo,
    /// The provider's type label (`openai`, …, from [`LlmProvider::kind`]) for metrics.
    pub kind: &'static str,
    /// The provider.
    pub provider: Arc<dyn LlmProvider>,
    /// The upstream model name (`model` of the provider's settings; its id when empty), the
    /// traces' `gen_ai.request.model`.
    pub upstream_model: Arc<str>,
    /// Whether the model takes images (`vision`, issue 17 item 5).
    pub vision: bool,
}

/// The configured models, their fallback chains and their providers' breakers.
#[derive(Debug)]
pub struct Models {
    models: Vec<Model>,
    /// Per model (same order): its fallback chain as indices into `models` (itself first).
    chains: Vec<Vec<usize>>,
    /// Per model (same order): its provider's circuit breaker.
    breakers: Mutex<Vec<CircuitBreaker>>,
    list: Vec<ModelInfo>,
}

impl Models {
    /// One model per configured provider (same order as `config.llm.providers`).
    pub fn new(config: &Config, providers: Vec<Arc<dyn LlmProvider>>, metrics: &Metrics) -> Self {
        let models: Vec<Model> = config
            .llm
            .providers
            .iter()
            .zip(providers)
            .map(|(p, provider)| Model {
                info: model_info(p),
                kind: provider.kind(),
                provider,
                upstream_model: Arc::from(
                    if p.model.is_empty() { &p.id } else { &p.model }.as_str(),
                ),
                vision: p.vision,
            })
            .collect();
        for model in &models {
            metrics.init_provider(model.kind);
            metrics.init_model(&model.info.id);
        }
        let list = models.iter().map(|m| m.info.clone()).collect();
        let chains = (0..models.len())
            .map(|i| chatbox_core::fallback::chain(&config.llm.providers, i))
            .map(|chain| chain.into_iter().filter(|&i| i < models.len()).collect())
            .collect();
        let breakers = vec![CircuitBreaker::new(BreakerLimits::PROVIDER); models.len()];
        Self { models, chains, breakers: Mutex::new(breakers), list }
    }

    /// The model for `id`, or the default (first) model when `id` is `None` or empty.
    pub fn get(&self, id: Option<&str>) -> Option<&Model> {
        match id.filter(|m| !m.is_empty()) {
            Some(id) => self.models.iter().find(|m| m.info.id == id),
            None => self.models.first(),
        }
    }

    /// Whether `id` names a configured model.
    pub fn has(&self, id: &str) -> bool {
        self.index_of(id).is_some()
    }

    /// The models as sent in `connection_status`.
    pub fn list(&self) -> &[ModelInfo] {
        &self.list
    }

    /// The models a reply for `model` may try, in order: `model`, then its fallbacks.
    pub fn chain(&self, model: &Model) -> Vec<Model> {
        match self.index_of(&model.info.id) {
            Some(i) => self.chains[i].iter().map(|&j| self.models[j].clone()).collect(),
            None => vec![model.clone()],
        }
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.models.iter().position(|m| m.info.id == id)
    }

    /// Whether `model`'s breaker lets an attempt start at `now` (as a call or as the probe).
    pub fn breaker_allows(&self, model: &Model, now: Instant) -> bool {
        let Some(i) = self.index_of(&model.info.id) else { return true };
        self.breakers().get_mut(i).is_none_or(|b| b.check(now).allowed())
    }

    /// Reports how an attempt on `model` ended to its breaker; whether the breaker is open
    /// (or half-open, awaiting a probe) afterwards.
    pub fn breaker_record(&self, model: &Model, outcome: CallOutcome, now: Instant) -> bool {
        let Some(i) = self.index_of(&model.info.id) else { return false };
        let mut breakers = self.breakers();
        let Some(breaker) = breakers.get_mut(i) else { return false };
        let was_open = breaker.is_open();
        breaker.record(outcome, now);
        let open = breaker.is_open();
        if open != was_open {
            let state = if was_open { "closed" } else { "open" };
            tracing::warn!(provider_id = %model.info.id, state, "provider circuit breaker changed");
        }
        open
    }

    fn breakers(&self) -> MutexGuard<'_, Vec<CircuitBreaker>> {
        self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn model_info(p: &ProviderConfig) -> ModelInfo {
    let name = if p.kind == ProviderKind::Echo && !p.name.to_lowercase().contains("demo") {
        format!("{} (demo)", p.name)
    } else {
        p.name.clone()
    };
    ModelInfo::new(p.id.clone(), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_falls_back_along_its_configured_chain_and_the_default_is_the_first() {
        let mut config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        config.llm.providers =
            (0..3).map(|i| ProviderConfig::echo(format!("p{i}"), format!("P{i}"))).collect();
        config.llm.providers[0].fallback = vec!["p2".into()];
        let providers: Vec<Arc<dyn LlmProvider>> = (0..3)
            .map(|_| Arc::new(crate::adapters::llm::echo::EchoProvider) as Arc<dyn LlmProvider>)
            .collect();
        let models = Models::new(&config, providers, &Metrics::new());
        let first = models.get(None).expect("a default model").clone();
        assert_eq!(first.info.id, "p0");
        assert_eq!(models.get(Some("")).map(|m| m.info.id.as_str()), Some("p0"));
        let chain: Vec<_> = models.chain(&first).into_iter().map(|m| m.info.id).collect();
        assert_eq!(chain, ["p0", "p2"]);
        assert!(models.has("p1") && !models.has("p9"));
        assert_eq!(models.list().len(), 3);
    }
}
