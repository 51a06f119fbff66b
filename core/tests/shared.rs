//! Seed property 14 with real threads (loom explores the interleavings in `tests/loom.rs`):
//! checks racing replacements of the origin list always see one whole policy.

use chatbox_core::origin::{OriginDecision, OriginPolicy};
use chatbox_core::shared::OriginList;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn prop_14_origin_check_thread_safe(replacements in 1usize..200, readers in 1usize..4) {
        let list = OriginList::new(OriginPolicy::new(["https://even.example"]));
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..replacements {
                    let origin = if i % 2 == 0 { "https://odd.example" } else { "https://even.example" };
                    list.replace(OriginPolicy::new([origin]));
                }
            });
            for _ in 0..readers {
                s.spawn(|| {
                    for _ in 0..replacements {
                        let snap = list.snapshot();
                        let even = snap.check(Some("https://even.example")) == OriginDecision::Allowed;
                        let odd = snap.check(Some("https://odd.example")) == OriginDecision::Allowed;
                        assert!(even ^ odd, "a snapshot is one whole policy");
                    }
                });
            }
        });
        let last_even = replacements % 2 == 0;
        prop_assert_eq!(
            list.check(Some("https://even.example")) == OriginDecision::Allowed,
            last_even
        );
    }
}
