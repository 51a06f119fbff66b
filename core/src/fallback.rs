//! Provider fallback (issue 17): which providers a reply may try, in which order, and the rules
//! the configured fallback lists must follow.
//!
//! Each provider may name an ordered list of fallback provider ids (`LLM_PROVIDER_<n>_FALLBACK` /
//! `fallback = [..]`). A reply's *chain* is its model followed by the fallbacks, expanded
//! depth-first: `a → [b, c]`, `b → [d]` gives `a, b, d, c`; an id already in the chain is not
//! tried twice. The configuration is valid only when every named id is configured and the
//! fallback graph has no cycle (a provider naming itself is a cycle too): [`problems`].
//!
//! [`FallbackPlan`] walks a chain against the providers' circuit breakers: a provider whose
//! breaker is open is skipped, the first allowed one is attempted; when every provider of the
//! chain is skipped the reply's own model is attempted anyway (a gateway with nothing else to
//! try answers with its model's real error rather than refusing without asking). Retrying one
//! provider is `retry::RetryPolicy::PROVIDER`'s business; deadlines are `stream`'s.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::config::{ConfigError, ProviderConfig, ProviderRef};

/// The chain of the provider at `start` (an index into `providers`): `start`, then its
/// fallbacks expanded depth-first, each provider once. Unknown ids are ignored (validation
/// refuses them at start-up).
pub fn chain(providers: &[ProviderConfig], start: usize) -> Vec<usize> {
    let index: HashMap<&str, usize> =
        providers.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(at) = stack.pop() {
        if at >= providers.len() || !seen.insert(at) {
            continue;
        }
        order.push(at);
        // Reversed so the first fallback is popped first (depth-first, list order).
        for id in providers[at].fallback.iter().rev() {
            if let Some(&next) = index.get(id.as_str()) {
                stack.push(next);
            }
        }
    }
    order
}

/// Every problem of the fallback lists: each unknown id (one error per provider and id) and
/// each cycle (one error per group of providers that reach each other, naming one cycle).
/// Positions in the errors are 1-based indices into `providers`.
pub(crate) fn problems(providers: &[ProviderConfig]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let index: HashMap<&str, usize> = providers
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.id.is_empty())
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); providers.len()];
    for (at, p) in providers.iter().enumerate() {
        for id in &p.fallback {
            match index.get(id.as_str()) {
                Some(&to) => edges[at].push(to),
                None => errors.push(ConfigError::ProviderFallbackUnknown {
                    provider: ProviderRef::new(at + 1, p.id.clone()),
                    id: id.clone(),
                }),
            }
        }
    }
    let mut reported: BTreeSet<usize> = BTreeSet::new();
    for start in 0..providers.len() {
        if reported.contains(&start) {
            continue;
        }
        if let Some(cycle) = shortest_cycle(&edges, start) {
            reported.extend(cycle.iter().copied());
            let mut ids: Vec<String> = cycle.iter().map(|&i| providers[i].id.clone()).collect();
            ids.push(providers[start].id.clone());
            errors.push(ConfigError::ProviderFallbackCycle {
                provider: ProviderRef::new(start + 1, providers[start].id.clone()),
                cycle: ids,
            });
        }
    }
    errors
}

/// The shortest path `start → … → start` in `edges` (breadth-first), as the list of nodes from
/// `start` up to the last one before returning; `None` when `start` is on no cycle.
fn shortest_cycle(edges: &[Vec<usize>], start: usize) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for &next in &edges[at] {
            if next == start {
                let mut path = vec![at];
                let mut node = at;
                while node != start {
                    node = parent[&node];
                    path.push(node);
                }
                path.reverse();
                return Some(path);
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = parent.entry(next) {
                slot.insert(at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The next provider a reply should attempt, from [`FallbackPlan::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Position in the chain (0 = the reply's own model).
    pub candidate: usize,
    /// Positions skipped before it because their breakers were open.
    pub skipped: Vec<usize>,
    /// Every provider of the chain was skipped: this is the reply's own model, attempted anyway.
    pub forced: bool,
}

/// The walk of one reply down its chain.
///
/// Invariants: each position is attempted at most once; positions are visited in chain order;
/// a plan over a non-empty chain attempts at least one provider; `forced` is set only when every
/// position was refused, and then the candidate is 0.
#[derive(Debug, Clone)]
pub struct FallbackPlan {
    len: usize,
    next: usize,
    attempted: usize,
    done: bool,
}

impl FallbackPlan {
    /// A plan over a chain of `len` providers.
    pub fn new(len: usize) -> Self {
        Self { len, next: 0, attempted: 0, done: len == 0 }
    }

    /// Providers attempted so far.
    pub fn attempted(&self) -> usize {
        self.attempted
    }

    /// The next provider to attempt: the first position from here on that `allowed` accepts
    /// (asked once per position, in order; a refused position is skipped), or the forced
    /// attempt of position 0 when nothing was attempted at all. `None` once the chain is used up.
    pub fn next(&mut self, mut allowed: impl FnMut(usize) -> bool) -> Option<Attempt> {
        if self.done {
            return None;
        }
        let mut skipped = Vec::new();
        while self.next < self.len {
            let candidate = self.next;
            self.next += 1;
            if allowed(candidate) {
                self.attempted += 1;
                return Some(Attempt { candidate, skipped, forced: false });
            }
            skipped.push(candidate);
        }
        self.done = true;
        if self.attempted == 0 {
            self.attempted = 1;
            return Some(Attempt { candidate: 0, skipped, forced: true });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_fallbacks(spec: &[(&str, &[&str])]) -> Vec<ProviderConfig> {
        spec.iter()
            .map(|(id, fallbacks)| {
                let mut p = ProviderConfig::echo(*id, id.to_uppercase());
                p.fallback = fallbacks.iter().map(|f| f.to_string()).collect();
                p
            })
            .collect()
    }

    #[test]
    fn chain_is_depth_first_in_list_order_without_repeats() {
        let p = with_fallbacks(&[("a", &["b", "c"]), ("b", &["d", "c"]), ("c", &[]), ("d", &[])]);
        assert_eq!(chain(&p, 0), vec![0, 1, 3, 2]);
        assert_eq!(chain(&p, 2), vec![2]);
        assert_eq!(chain(&p, 1), vec![1, 3, 2]);
    }

    #[test]
    fn unknown_ids_are_each_reported_with_their_provider() {
        let p = with_fallbacks(&[("a", &["zz", "b"]), ("b", &["yy"])]);
        assert_eq!(
            problems(&p),
            vec![
                ConfigError::ProviderFallbackUnknown {
                    provider: ProviderRef::new(1, "a"),
                    id: "zz".into()
                },
                ConfigError::ProviderFallbackUnknown {
                    provider: ProviderRef::new(2, "b"),
                    id: "yy".into()
                },
            ]
        );
    }

    #[test]
    fn self_reference_and_longer_cycles_are_reported_once_each() {
        let p = with_fallbacks(&[("a", &["a"]), ("b", &["c"]), ("c", &["d"]), ("d", &["b"])]);
        assert_eq!(
            problems(&p),
            vec![
                ConfigError::ProviderFallbackCycle {
                    provider: ProviderRef::new(1, "a"),
                    cycle: vec!["a".into(), "a".into()],
                },
                ConfigError::ProviderFallbackCycle {
                    provider: ProviderRef::new(2, "b"),
                    cycle: vec!["b".into(), "c".into(), "d".into(), "b".into()],
                },
            ]
        );
        let text = problems(&p)[1].to_string();
        assert!(text.contains("LLM_PROVIDER_2_FALLBACK / llm.providers[1].fallback"), "{text}");
        assert!(text.contains("b → c → d → b"), "{text}");
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let p = with_fallbacks(&[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"]), ("d", &[])]);
        assert_eq!(problems(&p), vec![]);
    }

    #[test]
    fn plan_skips_refused_and_forces_the_model_when_all_are_refused() {
        let mut plan = FallbackPlan::new(3);
        assert_eq!(
            plan.next(|i| i != 0),
            Some(Attempt { candidate: 1, skipped: vec![0], forced: false })
        );
        assert_eq!(plan.next(|_| false), None, "2 refused, something was attempted");

        let mut plan = FallbackPlan::new(2);
        assert_eq!(
            plan.next(|_| false),
            Some(Attempt { candidate: 0, skipped: vec![0, 1], forced: true })
        );
        assert_eq!(plan.next(|_| true), None);
        assert_eq!(FallbackPlan::new(0).next(|_| true), None);
    }
}
