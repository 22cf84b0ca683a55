//! The storage probe inside every `ChallengeRoom`, for development only: a counter kept in the
//! room's SQLite, read and added to through `GET|POST /v1/dev/rooms/{id}/probe` (dev mode), which
//! proves a room's storage survives requests and restarts. This is not the room: its joins, seats
//! and roster are [`crate::join`], and its `#[durable_object]` wrapper is `ChallengeRoom` in
//! `workers/room.rs`. Its path and bodies are part of the objects' protocol ([`crate::protocol`]).

use crate::protocol::{ProbeAdd, ProbeValue, RoomRoute};

/// Largest step a single probe request may add: the probe exists to prove persistence, and a bound
/// keeps a caller from walking the counter to overflow in a handful of requests.
pub const PROBE_ADD_MAX: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the request does not fit the room protocol: {0}")]
    BadRequest(String),
    #[error("no such room operation")]
    UnknownOperation,
    #[error("the probe value would overflow")]
    Overflow,
    #[error("room storage failed: {0}")]
    Storage(String),
}

impl ProbeError {
    /// The status the room answers with; the edge maps it to the public error.
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        match self {
            ProbeError::BadRequest(_) | ProbeError::Overflow => 422,
            ProbeError::UnknownOperation => 404,
            ProbeError::Storage(_) => 500,
        }
    }
}

/// What the probe keeps. Implemented over Durable Object SQLite in production and over memory in tests.
pub trait ProbeStore {
    /// # Errors
    /// [`ProbeError::Storage`] when the store fails.
    fn probe_value(&self) -> Result<i64, ProbeError>;
    /// # Errors
    /// [`ProbeError::Storage`] when the store fails.
    fn set_probe_value(&mut self, value: i64) -> Result<(), ProbeError>;
}

/// A request to the probe, already read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCall {
    ReadProbe,
    AddToProbe(ProbeAdd),
}

impl ProbeCall {
    /// Parses the internal protocol.
    ///
    /// # Errors
    /// [`ProbeError::UnknownOperation`] for an unknown path or method, [`ProbeError::BadRequest`]
    /// for a malformed body or a step outside `1..=PROBE_ADD_MAX`.
    pub fn parse(method: &str, path: &str, body: &[u8]) -> Result<Self, ProbeError> {
        match RoomRoute::recognise(method, path) {
            Some(RoomRoute::ReadProbe) => Ok(ProbeCall::ReadProbe),
            Some(RoomRoute::AddToProbe) => {
                let add: ProbeAdd = serde_json::from_slice(body)
                    .map_err(|e| ProbeError::BadRequest(e.to_string()))?;
                if !(1..=PROBE_ADD_MAX).contains(&add.add) {
                    return Err(ProbeError::BadRequest(format!(
                        "add must be within 1..={PROBE_ADD_MAX}"
                    )));
                }
                Ok(ProbeCall::AddToProbe(add))
            }
            _ => Err(ProbeError::UnknownOperation),
        }
    }
}

/// The probe's state machine.
pub struct Probe<S> {
    store: S,
}

impl<S: ProbeStore> Probe<S> {
    pub fn new(store: S) -> Self {
        Probe { store }
    }

    /// Applies one call.
    ///
    /// # Errors
    /// [`ProbeError::Overflow`] when the probe would overflow; storage errors as they come.
    pub fn handle(&mut self, call: &ProbeCall) -> Result<ProbeValue, ProbeError> {
        match call {
            ProbeCall::ReadProbe => Ok(ProbeValue {
                value: self.store.probe_value()?,
            }),
            ProbeCall::AddToProbe(ProbeAdd { add }) => {
                let value = self
                    .store
                    .probe_value()?
                    .checked_add(*add)
                    .ok_or(ProbeError::Overflow)?;
                self.store.set_probe_value(value)?;
                Ok(ProbeValue { value })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct MemoryStore {
        value: i64,
        fail_writes: bool,
    }

    impl ProbeStore for MemoryStore {
        fn probe_value(&self) -> Result<i64, ProbeError> {
            Ok(self.value)
        }
        fn set_probe_value(&mut self, value: i64) -> Result<(), ProbeError> {
            if self.fail_writes {
                return Err(ProbeError::Storage("disk full".into()));
            }
            self.value = value;
            Ok(())
        }
    }

    #[test]
    fn adding_to_the_probe_accumulates() {
        let mut probe = Probe::new(MemoryStore::default());
        assert_eq!(
            probe.handle(&ProbeCall::AddToProbe(ProbeAdd { add: 2 })),
            Ok(ProbeValue { value: 2 })
        );
        assert_eq!(
            probe.handle(&ProbeCall::AddToProbe(ProbeAdd { add: 3 })),
            Ok(ProbeValue { value: 5 })
        );
        assert_eq!(
            probe.handle(&ProbeCall::ReadProbe),
            Ok(ProbeValue { value: 5 })
        );
    }

    #[test]
    fn a_failed_write_leaves_the_value_as_it_was() {
        let mut probe = Probe::new(MemoryStore {
            value: 7,
            fail_writes: true,
        });
        assert!(matches!(
            probe.handle(&ProbeCall::AddToProbe(ProbeAdd { add: 1 })),
            Err(ProbeError::Storage(_))
        ));
        assert_eq!(
            probe.handle(&ProbeCall::ReadProbe),
            Ok(ProbeValue { value: 7 })
        );
    }

    #[test]
    fn the_probe_refuses_to_overflow() {
        let mut probe = Probe::new(MemoryStore {
            value: i64::MAX,
            fail_writes: false,
        });
        assert_eq!(
            probe.handle(&ProbeCall::AddToProbe(ProbeAdd { add: 1 })),
            Err(ProbeError::Overflow)
        );
    }

    #[test]
    fn malformed_or_out_of_range_steps_are_refused() {
        assert!(matches!(
            ProbeCall::parse("POST", RoomRoute::AddToProbe.path(), b"{\"add\":0}"),
            Err(ProbeError::BadRequest(_))
        ));
        assert!(matches!(
            ProbeCall::parse("POST", RoomRoute::AddToProbe.path(), b"{\"add\":\"1\"}"),
            Err(ProbeError::BadRequest(_))
        ));
        assert!(matches!(
            ProbeCall::parse("POST", RoomRoute::AddToProbe.path(), b"{\"add\":1000001}"),
            Err(ProbeError::BadRequest(_))
        ));
        assert_eq!(
            ProbeCall::parse("DELETE", RoomRoute::ReadProbe.path(), b""),
            Err(ProbeError::UnknownOperation)
        );
    }
}
