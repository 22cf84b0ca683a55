//! What every provider's fault injection shares: an ordered, bounded list of rules, each good for
//! a number of calls. The first rule that matches a call applies and is used up after its count.
//! What a rule matches and what it does are each provider's own (`toss::faults`,
//! `oauth::faults`, `fcm::faults`); the list, the counting and the common checks of a rule's
//! fields are here, once.

use std::num::NonZeroU32;

use axum::http::StatusCode;
use serde_json::{Value, json};

/// Rules kept at once: a test adds a handful; the bound stops a loop from growing the list.
pub const FAULT_RULES_MAX: usize = 64;
/// A longer injected latency is longer than any client timeout worth testing.
pub const FAULT_LATENCY_MS_MAX: u64 = 120_000;

/// How many more calls a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uses {
    Left(NonZeroU32),
    /// Until the rules are cleared.
    UntilCleared,
}

/// What a rule's `count: 0` means to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCount {
    Refused,
    UntilCleared,
}

impl Uses {
    /// A rule's `count` field: absent is one call.
    ///
    /// # Errors
    /// `count: 0` where the provider refuses it.
    pub fn from_count(count: Option<u32>, zero: ZeroCount) -> Result<Self, String> {
        match (NonZeroU32::new(count.unwrap_or(1)), zero) {
            (Some(left), _) => Ok(Self::Left(left)),
            (None, ZeroCount::UntilCleared) => Ok(Self::UntilCleared),
            (None, ZeroCount::Refused) => Err("count must be at least 1".to_owned()),
        }
    }

    /// The `count` the control plane lists: 0 for until cleared.
    #[must_use]
    pub fn count(self) -> u32 {
        match self {
            Self::Left(left) => left.get(),
            Self::UntilCleared => 0,
        }
    }
}

/// One provider's rule: what it matches is the provider's to say, at [`Faults::take_first`].
pub trait Rule {
    /// What the rule does to a call it applies to.
    type Kind: Clone;
    fn kind(&self) -> &Self::Kind;
    /// The rule as the control plane lists it, but for its `count`.
    fn to_json(&self) -> Value;
}

/// A rule and the calls it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted<R> {
    pub rule: R,
    pub uses: Uses,
}

impl<R: Rule> Counted<R> {
    /// The rule as the control plane lists it, with its `count`.
    pub fn to_json(&self) -> Value {
        let mut json = self.rule.to_json();
        json["count"] = json!(self.uses.count());
        json
    }
}

/// The rules of one provider, in the order they were added.
#[derive(Debug)]
pub struct Faults<R> {
    rules: Vec<Counted<R>>,
}

impl<R> Default for Faults<R> {
    fn default() -> Self {
        Self { rules: Vec::new() }
    }
}

impl<R: Rule> Faults<R> {
    /// # Errors
    /// The list already holds [`FAULT_RULES_MAX`] rules.
    pub fn add(&mut self, rule: Counted<R>) -> Result<(), String> {
        if self.rules.len() >= FAULT_RULES_MAX {
            return Err(format!(
                "at most {FAULT_RULES_MAX} rules; DELETE them first"
            ));
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Uses up one call of the first rule that `matches`, and drops it when it has none left.
    /// Without rules this is one length check.
    pub fn take_first(&mut self, matches: impl Fn(&R) -> bool) -> Option<R::Kind> {
        if self.rules.is_empty() {
            return None;
        }
        let index = self
            .rules
            .iter()
            .position(|counted| matches(&counted.rule))?;
        let counted = &mut self.rules[index];
        let kind = counted.rule.kind().clone();
        if let Uses::Left(left) = counted.uses {
            match NonZeroU32::new(left.get() - 1) {
                Some(left) => counted.uses = Uses::Left(left),
                None => {
                    self.rules.remove(index);
                }
            }
        }
        Some(kind)
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn rules(&self) -> &[Counted<R>] {
        &self.rules
    }

    /// The list as the control plane shows it: `{"rules": [...]}`.
    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self.rules.iter().map(Counted::to_json).collect();
        json!({ "rules": rules })
    }
}

/// A `latency` rule's `latencyMs`: present and at most [`FAULT_LATENCY_MS_MAX`].
///
/// # Errors
/// Which of the two it is not.
pub fn latency_ms(latency_ms: Option<u64>) -> Result<u64, String> {
    let ms = latency_ms.ok_or("latency needs latencyMs")?;
    if ms > FAULT_LATENCY_MS_MAX {
        return Err(format!("latencyMs must be at most {FAULT_LATENCY_MS_MAX}"));
    }
    Ok(ms)
}

/// An `error` rule's `status`: a client or server error.
///
/// # Errors
/// Any other number.
pub fn error_status(status: u16) -> Result<StatusCode, String> {
    StatusCode::from_u16(status)
        .ok()
        .filter(|status| status.is_client_error() || status.is_server_error())
        .ok_or_else(|| "status must be an error status, 400 to 599".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule for one call name, doing "its name".
    #[derive(Debug)]
    struct Named {
        call: &'static str,
        does: &'static str,
    }

    impl Rule for Named {
        type Kind = &'static str;
        fn kind(&self) -> &&'static str {
            &self.does
        }
        fn to_json(&self) -> Value {
            json!({ "call": self.call })
        }
    }

    fn faults(rules: &[(&'static str, &'static str, Option<u32>)]) -> Faults<Named> {
        let mut faults = Faults::default();
        for &(call, does, count) in rules {
            let uses = Uses::from_count(count, ZeroCount::UntilCleared);
            let rule = Named { call, does };
            let added = uses.and_then(|uses| faults.add(Counted { rule, uses }));
            assert_eq!(added, Ok(()));
        }
        faults
    }

    fn take(faults: &mut Faults<Named>, call: &str) -> Option<&'static str> {
        faults.take_first(|rule| rule.call == call)
    }

    #[test]
    fn a_rule_applies_to_its_count_of_matching_calls_and_then_lapses() {
        let mut faults = faults(&[("confirm", "hang", Some(2))]);
        assert_eq!(take(&mut faults, "cancel"), None);
        assert_eq!(take(&mut faults, "confirm"), Some("hang"));
        assert_eq!(
            faults.to_json(),
            json!({"rules": [{"call": "confirm", "count": 1}]})
        );
        assert_eq!(take(&mut faults, "confirm"), Some("hang"));
        assert_eq!(take(&mut faults, "confirm"), None);
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn an_absent_count_is_one_call_and_zero_lasts_until_cleared_where_allowed() {
        let mut faults = faults(&[("get", "once", None), ("get", "always", Some(0))]);
        assert_eq!(take(&mut faults, "get"), Some("once"));
        for _ in 0..100 {
            assert_eq!(take(&mut faults, "get"), Some("always"));
        }
        faults.clear();
        assert_eq!(take(&mut faults, "get"), None);
        assert!(Uses::from_count(Some(0), ZeroCount::Refused).is_err());
    }

    #[test]
    fn rules_apply_in_the_order_added() {
        let mut faults = faults(&[("get", "first", Some(1)), ("get", "second", Some(1))]);
        assert_eq!(take(&mut faults, "get"), Some("first"));
        assert_eq!(take(&mut faults, "get"), Some("second"));
    }

    #[test]
    fn the_rule_list_is_bounded() {
        let mut faults = faults(&[("get", "hang", None); FAULT_RULES_MAX]);
        let one_more = faults.add(Counted {
            rule: Named {
                call: "get",
                does: "hang",
            },
            uses: Uses::UntilCleared,
        });
        assert!(one_more.is_err());
        assert_eq!(faults.rules().len(), FAULT_RULES_MAX);
    }

    #[test]
    fn latency_and_status_are_checked_where_every_provider_checks_them() {
        assert_eq!(latency_ms(Some(5)), Ok(5));
        assert!(latency_ms(None).is_err());
        assert!(latency_ms(Some(FAULT_LATENCY_MS_MAX + 1)).is_err());
        assert_eq!(error_status(503), Ok(StatusCode::SERVICE_UNAVAILABLE));
        assert!(error_status(302).is_err());
        assert!(error_status(600).is_err());
    }
}
