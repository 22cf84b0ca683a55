//! Sign-in's messages between the edge and the core: the bodies of the `AUTH_*` routes and their
//! answers. The edge writes and reads these types, the core reads and writes the same ones, so a
//! field renamed on one side does not compile on the other.
//!
//! The edge's public answers (`/v1/auth/*`) are not here: the edge builds them from these, adding
//! the access token it mints itself.

use serde::{Deserialize, Serialize};

/// Body of [`AUTH_START`](super::AUTH_START).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartBody {
    pub redirect_uri: String,
    /// The client's S256 challenge (the edge has refused any other method).
    pub code_challenge: String,
    /// The client's address as the host reports it: logins are rate limited per address.
    pub client_ip: String,
}

/// Answer of [`AUTH_START`](super::AUTH_START): where the edge redirects the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub authorize_url: String,
}

/// Body of [`AUTH_CALLBACK`](super::AUTH_CALLBACK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackBody {
    pub code: String,
    pub state: String,
    /// Absent when the client sent none: the core still spends the state, then refuses, so a
    /// callback without one cannot be retried with the same state.
    #[serde(default)]
    pub code_verifier: Option<String>,
    pub client_ip: String,
}

/// Who signed in (part of a [`Session`], and of the edge's public answer as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInUser {
    pub id: String,
    pub nickname: String,
    pub is_new: bool,
}

/// Answer of [`AUTH_CALLBACK`](super::AUTH_CALLBACK): a signed-in user and their new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: SignedInUser,
    /// The refresh family: the access tokens' `jti` prefix.
    pub family: String,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// Body of [`AUTH_REFRESH`](super::AUTH_REFRESH).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// Answer of [`AUTH_REFRESH`](super::AUTH_REFRESH): the session rotated within its family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    pub user_id: String,
    /// The refresh family: the access tokens' `jti` prefix.
    pub family: String,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// Body of [`AUTH_LOGOUT`](super::AUTH_LOGOUT) (answered with 204): the access token signing out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutBody {
    pub jti: String,
    /// The token's `exp`: the revocation of this `jti` is kept until then.
    pub expires_at: i64,
}

/// Body of [`AUTH_REVOKED`](super::AUTH_REVOKED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedBody {
    pub jti: String,
}

/// Answer of [`AUTH_REVOKED`](super::AUTH_REVOKED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_without_a_verifier_is_sent_as_null_and_read_as_absent() {
        let body = CallbackBody {
            code: "c".to_owned(),
            state: "s".to_owned(),
            code_verifier: None,
            client_ip: "203.0.113.7".to_owned(),
        };
        let wire = serde_json::to_value(&body).unwrap();
        assert_eq!(wire["code_verifier"], serde_json::Value::Null);
        let read: CallbackBody =
            serde_json::from_str(r#"{"code":"c","state":"s","client_ip":"203.0.113.7"}"#).unwrap();
        assert_eq!(read, body);
    }

    #[test]
    fn a_session_reads_the_cores_answer_as_the_core_writes_it() {
        let wire = r#"{"user":{"id":"u_1","nickname":"네네000001","is_new":true},"family":"0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d","refresh_token":"r","refresh_expires_in":1}"#;
        let session: Session = serde_json::from_str(wire).unwrap();
        assert_eq!(session.user.id, "u_1");
        assert_eq!(serde_json::to_string(&session).unwrap(), wire);
    }
}
