//! The three providers, the sandbox's test users, and the stable ids each provider gives them.
//!
//! Clients are not registered and there is no login page: the authorize request names its user
//! with `sandbox_user`, and each provider derives that user's id from a hash, so the same name
//! always gets the same id at one provider and unrelated ids at the others, across restarts.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// The user an authorize request without `sandbox_user` logs in.
pub const SANDBOX_USER_DEFAULT: &str = "test-user";
/// Test user names are short labels (`alice`, `user-7`); the bound keeps ids, nicknames and
/// e-mail addresses derived from them short too.
pub const SANDBOX_USER_CHARS_MAX: usize = 64;

/// Kakao's member ids are positive integers of ten digits these days; staying in that range
/// keeps them below 2^53, so a JavaScript client reads them exactly.
const KAKAO_ID_MIN: u64 = 1_000_000_000;
const KAKAO_ID_SPAN: u64 = 9_000_000_000;
/// Google's `sub` is a string of 21 digits starting with `1`: `1` and then this many.
const GOOGLE_SUBJECT_TAIL_DIGITS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Kakao,
    Naver,
    Google,
}

impl Provider {
    pub const ALL: [Self; 3] = [Self::Kakao, Self::Naver, Self::Google];

    /// The path prefix and the name the control plane uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kakao => "kakao",
            Self::Naver => "naver",
            Self::Google => "google",
        }
    }

    /// The `iss` of its `id_token`s; Naver speaks no OpenID Connect.
    pub fn issuer(self) -> Option<&'static str> {
        match self {
            Self::Kakao => Some("https://kauth.kakao.com"),
            Self::Naver => None,
            Self::Google => Some("https://accounts.google.com"),
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Kakao => 0,
            Self::Naver => 1,
            Self::Google => 2,
        }
    }

    /// The provider's id for `user`, as a string (Kakao's is a number in its own JSON).
    pub fn user_id(self, user: &SandboxUser) -> String {
        match self {
            Self::Kakao => kakao_user_id(user).to_string(),
            Self::Naver => naver_user_id(user),
            Self::Google => google_subject(user),
        }
    }
}

/// A test user's name: 1 to [`SANDBOX_USER_CHARS_MAX`] of `A-Z a-z 0-9 . _ -`, so that it is
/// safe inside an e-mail address and a log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SandboxUser(String);

impl SandboxUser {
    /// # Errors
    /// A message saying what is wrong with `name`.
    pub fn parse(name: &str) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > SANDBOX_USER_CHARS_MAX || !name.chars().all(allowed) {
            return Err(format!(
                "sandbox_user must be 1 to {SANDBOX_USER_CHARS_MAX} of A-Z a-z 0-9 . _ -"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn default_user() -> Self {
        Self(SANDBOX_USER_DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user's nickname at every provider: the name itself, so tests can recognise it.
    pub fn nickname(&self) -> &str {
        &self.0
    }

    /// A verified address in a domain reserved for examples, so nothing is ever delivered.
    pub fn email(&self) -> String {
        format!("{}@example.com", self.0)
    }
}

/// SHA-256 of the provider and the user, so the providers' ids are unrelated.
fn digest(provider: Provider, user: &SandboxUser) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(provider.name().as_bytes());
    hasher.update([0]);
    hasher.update(user.as_str().as_bytes());
    hasher.finalize().into()
}

/// Kakao's `id`: a JSON number.
pub fn kakao_user_id(user: &SandboxUser) -> u64 {
    let digest = digest(Provider::Kakao, user);
    let mut head = [0; 8];
    head.copy_from_slice(&digest[..8]);
    KAKAO_ID_MIN + u64::from_be_bytes(head) % KAKAO_ID_SPAN
}

/// Naver's `response.id`: an opaque string of 43 URL-safe characters, as Naver issues per app.
pub fn naver_user_id(user: &SandboxUser) -> String {
    URL_SAFE_NO_PAD.encode(digest(Provider::Naver, user))
}

/// Google's `sub`: 21 decimal digits in a string.
pub fn google_subject(user: &SandboxUser) -> String {
    let digest = digest(Provider::Google, user);
    let mut head = [0; 16];
    head.copy_from_slice(&digest[..16]);
    let tail = u128::from_be_bytes(head) % 10_u128.pow(GOOGLE_SUBJECT_TAIL_DIGITS);
    format!("1{tail:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> SandboxUser {
        SandboxUser::parse(name).unwrap()
    }

    #[test]
    fn a_user_keeps_the_same_id_at_a_provider_and_gets_different_ids_at_others() {
        let alice = user("alice");
        for provider in Provider::ALL {
            assert_eq!(provider.user_id(&alice), provider.user_id(&user("alice")));
            assert_ne!(provider.user_id(&alice), provider.user_id(&user("bob")));
        }
        assert_ne!(
            Provider::Kakao.user_id(&alice),
            Provider::Google.user_id(&alice)
        );
    }

    #[test]
    fn each_provider_shapes_its_id_as_the_real_one_does() {
        for name in ["alice", "bob", "test-user", "a"] {
            let kakao = kakao_user_id(&user(name));
            assert!((KAKAO_ID_MIN..KAKAO_ID_MIN + KAKAO_ID_SPAN).contains(&kakao));
            assert!(kakao < 1 << 53, "exact in JavaScript");
            let naver = naver_user_id(&user(name));
            assert_eq!(naver.len(), 43);
            let google = google_subject(&user(name));
            assert_eq!(google.len(), 21);
            assert!(google.starts_with('1') && google.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn a_user_name_outside_the_safe_alphabet_or_too_long_is_refused() {
        assert!(SandboxUser::parse("alice.kim_2-x").is_ok());
        assert!(SandboxUser::parse("").is_err());
        assert!(SandboxUser::parse("al ice").is_err());
        assert!(SandboxUser::parse("alice@example.com").is_err());
        assert!(SandboxUser::parse(&"a".repeat(SANDBOX_USER_CHARS_MAX)).is_ok());
        assert!(SandboxUser::parse(&"a".repeat(SANDBOX_USER_CHARS_MAX + 1)).is_err());
    }
}
