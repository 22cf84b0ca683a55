//! The storage probe inside every `ChallengeRoom`, for development only: a counter kept in the
//! room's SQLite, read and added to through `GET|POST /v1/dev/rooms/{id}/probe` (dev mode), which
//! proves a room's storage survives requests and restarts. This is not the room: its joins, seats
//! and roster are [`crate::join`], and its `#[durable_object]` wrapper is `ChallengeRoom` in
//! `workers.rs`.
//!
//! The probe's path and bodies below are part of the internal protocol between the edge and a
//! room (`RoomCall`).

use serde::{Deserialize, Serialize};

/// Path of the plumbing probe inside a room.
pub const PATH_PROBE: &str = "/probe";

/// Largest step a single probe request may add: the probe exists to prove persistence, and a bound
/// keeps a caller from walking the counter to overflow in a handful of requests.
pub const PROBE_ADD_MAX: i64 = 1_000_000;

/// Body of `POST /probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeAdd {
    pub add: i64,
}

/// Body of every probe answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeValue {
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the request does not fit the room protocol: {0}")]
    BadRequest(String),
    #[error("no such room operation")]
    UnknownOperation,
    #[error("the probe value would overflow")]
    Overflow,
    #[error("room storage failed: {0}")]
    Storage(String),
}

impl RoomError {
    /// The status the room answers with; the edge maps it to the public error.
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        match self {
            RoomError::BadRequest(_) | RoomError::Overflow => 422,
            RoomError::UnknownOperation => 404,
            RoomError::Storage(_) => 500,
        }
    }
}

/// What a room keeps. Implemented over Durable Object SQLite in production and over memory in tests.
pub trait RoomStore {
    /// # Errors
    /// [`RoomError::Storage`] when the store fails.
    fn probe_value(&self) -> Result<i64, RoomError>;
    /// # Errors
    /// [`RoomError::Storage`] when the store fails.
    fn set_probe_value(&mut self, value: i64) -> Result<(), RoomError>;
}

/// A request to a room, already read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomCall {
    ReadProbe,
    AddToProbe(ProbeAdd),
}

impl RoomCall {
    /// Parses the internal protocol.
    ///
    /// # Errors
    /// [`RoomError::UnknownOperation`] for an unknown path or method, [`RoomError::BadRequest`]
    /// for a malformed body or a step outside `1..=PROBE_ADD_MAX`.
    pub fn parse(method: &str, path: &str, body: &[u8]) -> Result<Self, RoomError> {
        match (method, path) {
            ("GET", PATH_PROBE) => Ok(RoomCall::ReadProbe),
            ("POST", PATH_PROBE) => {
                let add: ProbeAdd = serde_json::from_slice(body)
                    .map_err(|e| RoomError::BadRequest(e.to_string()))?;
                if !(1..=PROBE_ADD_MAX).contains(&add.add) {
                    return Err(RoomError::BadRequest(format!(
                        "add must be within 1..={PROBE_ADD_MAX}"
                    )));
                }
                Ok(RoomCall::AddToProbe(add))
            }
            _ => Err(RoomError::UnknownOperation),
        }
    }
}

/// The room's state machine.
pub struct Room<S> {
    store: S,
}

impl<S: RoomStore> Room<S> {
    pub fn new(store: S) -> Self {
        Room { store }
    }

    /// Applies one call.
    ///
    /// # Errors
    /// [`RoomError::Overflow`] when the probe would overflow; storage errors as they come.
    pub fn handle(&mut self, call: &RoomCall) -> Result<ProbeValue, RoomError> {
        match call {
            RoomCall::ReadProbe => Ok(ProbeValue {
                value: self.store.probe_value()?,
            }),
            RoomCall::AddToProbe(ProbeAdd { add }) => {
                let value = self
                    .store
                    .probe_value()?
                    .checked_add(*add)
                    .ok_or(RoomError::Overflow)?;
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

    impl RoomStore for MemoryStore {
        fn probe_value(&self) -> Result<i64, RoomError> {
            Ok(self.value)
        }
        fn set_probe_value(&mut self, value: i64) -> Result<(), RoomError> {
            if self.fail_writes {
                return Err(RoomError::Storage("disk full".into()));
            }
            self.value = value;
            Ok(())
        }
    }

    #[test]
    fn adding_to_the_probe_accumulates() {
        let mut room = Room::new(MemoryStore::default());
        assert_eq!(
            room.handle(&RoomCall::AddToProbe(ProbeAdd { add: 2 })),
            Ok(ProbeValue { value: 2 })
        );
        assert_eq!(
            room.handle(&RoomCall::AddToProbe(ProbeAdd { add: 3 })),
            Ok(ProbeValue { value: 5 })
        );
        assert_eq!(
            room.handle(&RoomCall::ReadProbe),
            Ok(ProbeValue { value: 5 })
        );
    }

    #[test]
    fn a_failed_write_leaves_the_value_as_it_was() {
        let mut room = Room::new(MemoryStore {
            value: 7,
            fail_writes: true,
        });
        assert!(matches!(
            room.handle(&RoomCall::AddToProbe(ProbeAdd { add: 1 })),
            Err(RoomError::Storage(_))
        ));
        assert_eq!(
            room.handle(&RoomCall::ReadProbe),
            Ok(ProbeValue { value: 7 })
        );
    }

    #[test]
    fn the_probe_refuses_to_overflow() {
        let mut room = Room::new(MemoryStore {
            value: i64::MAX,
            fail_writes: false,
        });
        assert_eq!(
            room.handle(&RoomCall::AddToProbe(ProbeAdd { add: 1 })),
            Err(RoomError::Overflow)
        );
    }

    #[test]
    fn malformed_or_out_of_range_steps_are_refused() {
        assert!(matches!(
            RoomCall::parse("POST", PATH_PROBE, b"{\"add\":0}"),
            Err(RoomError::BadRequest(_))
        ));
        assert!(matches!(
            RoomCall::parse("POST", PATH_PROBE, b"{\"add\":\"1\"}"),
            Err(RoomError::BadRequest(_))
        ));
        assert!(matches!(
            RoomCall::parse("POST", PATH_PROBE, b"{\"add\":1000001}"),
            Err(RoomError::BadRequest(_))
        ));
        assert_eq!(
            RoomCall::parse("DELETE", PATH_PROBE, b""),
            Err(RoomError::UnknownOperation)
        );
    }
}
