//! The service accounts the token endpoint knows, as Google's key files write them.
//!
//! Two fixed 2048-bit test keys, generated once with `openssl genpkey -algorithm RSA` and committed
//! in the format of the key file the Google Cloud console downloads (`type: "service_account"`,
//! `private_key` a PKCS#8 PEM):
//! - `service-account.json` ([`SERVICE_ACCOUNT_JSON`]): `fcm-sender@nene-sandbox.iam.
//!   gserviceaccount.com` of project `nene-sandbox`, registered: its assertions are exchanged for
//!   access tokens. Served at `GET /sandbox/fcm/service-account.json`.
//! - `unregistered-service-account.json` ([`UNREGISTERED_SERVICE_ACCOUNT_JSON`]): the same account
//!   with a key Google does not know (as after the key was deleted in the console): its assertions
//!   fail with `Invalid JWT Signature.`. Served at
//!   `GET /sandbox/fcm/unregistered-service-account.json`.
//!
//! Both files keep Google's `token_uri` (`https://oauth2.googleapis.com/token`): a client posts to
//! its configured token URL (the sandbox's `…/fcm/token`), and the sandbox accepts either URL as
//! the assertion's `aud`. The keys protect nothing; never reuse them.

use std::sync::LazyLock;

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header,
    jwk::{AlgorithmParameters, Jwk},
};
use serde::{Deserialize, Serialize};

pub const SERVICE_ACCOUNT_JSON: &str = include_str!("service-account.json");
pub const UNREGISTERED_SERVICE_ACCOUNT_JSON: &str =
    include_str!("unregistered-service-account.json");

/// The project both files belong to: the one `messages:send` accepts in its path.
pub const PROJECT_ID: &str = "nene-sandbox";
pub const CLIENT_EMAIL: &str = "fcm-sender@nene-sandbox.iam.gserviceaccount.com";

/// The fields of a key file the sandbox reads (Google's files have a few more, kept in the
/// committed files for fidelity).
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccountFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub project_id: String,
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    pub client_id: String,
    pub token_uri: String,
}

/// One key of a service account, ready to verify (and, for tests, to sign) assertions.
pub struct ServiceAccountKey {
    pub project_id: String,
    pub client_email: String,
    pub client_id: String,
    /// The key's id: the `kid` in the assertion header.
    pub private_key_id: String,
    encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// # Errors
    /// The JSON is not a service-account key file with an RSA PKCS#8 `private_key`.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let file: ServiceAccountFile =
            serde_json::from_str(json).map_err(|error| format!("key file: {error}"))?;
        if file.kind != "service_account" {
            return Err(format!("key file: type {:?}", file.kind));
        }
        let encoding = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|error| format!("private_key: not an RSA PKCS#8 PEM: {error}"))?;
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|error| format!("{}: {error}", file.private_key_id))?;
        let AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
            return Err(format!("{}: not an RSA key", file.private_key_id));
        };
        let decoding = DecodingKey::from_rsa_components(&rsa.n, &rsa.e)
            .map_err(|error| format!("{}: {error}", file.private_key_id))?;
        Ok(Self {
            project_id: file.project_id,
            client_email: file.client_email,
            client_id: file.client_id,
            private_key_id: file.private_key_id,
            encoding,
            decoding,
        })
    }

    /// An RS256 JWT over `claims` with this key's id as `kid`, as a client signs its assertion.
    ///
    /// # Errors
    /// Signing failed (the keys are committed and tested, so in practice never).
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.private_key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|error| format!("signing an assertion: {error}"))
    }
}

/// The committed keys: the registered one and the one Google does not know.
#[derive(Debug)]
pub struct Registry {
    registered: ServiceAccountKey,
    unregistered: ServiceAccountKey,
}

/// Parsed once per process: parsing checks the RSA key, which is slow in debug builds.
static EMBEDDED: LazyLock<Result<Registry, String>> = LazyLock::new(Registry::parse_embedded);

impl Registry {
    /// # Errors
    /// A committed key file is broken (a unit test keeps them whole).
    pub fn embedded() -> Result<&'static Self, &'static str> {
        EMBEDDED.as_ref().map_err(String::as_str)
    }

    fn parse_embedded() -> Result<Self, String> {
        Ok(Self {
            registered: ServiceAccountKey::from_json(SERVICE_ACCOUNT_JSON)?,
            unregistered: ServiceAccountKey::from_json(UNREGISTERED_SERVICE_ACCOUNT_JSON)?,
        })
    }

    pub fn registered(&self) -> &ServiceAccountKey {
        &self.registered
    }

    /// A key of the registered account that Google does not know: signs with it fail.
    pub fn unregistered(&self) -> &ServiceAccountKey {
        &self.unregistered
    }

    /// Whether `client_email` names a service account Google knows.
    pub fn knows_account(&self, client_email: &str) -> bool {
        self.registered.client_email == client_email
    }

    /// The registered keys of `client_email`.
    pub fn keys_of<'s, 'e>(
        &'s self,
        client_email: &'e str,
    ) -> impl Iterator<Item = &'s ServiceAccountKey> + use<'s, 'e> {
        std::iter::once(&self.registered).filter(move |key| key.client_email == client_email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> &'static Registry {
        Registry::embedded().unwrap()
    }

    #[test]
    fn the_committed_key_files_parse_as_two_keys_of_the_same_account() {
        let registry = registry();
        let (registered, unregistered) = (registry.registered(), registry.unregistered());
        assert_eq!(registered.project_id, PROJECT_ID);
        assert_eq!(registered.client_email, CLIENT_EMAIL);
        assert_eq!(unregistered.client_email, CLIENT_EMAIL);
        assert_ne!(registered.private_key_id, unregistered.private_key_id);
        assert!(registry.knows_account(CLIENT_EMAIL));
        assert_eq!(registry.keys_of(CLIENT_EMAIL).count(), 1);
        assert_eq!(registry.keys_of("someone@else").count(), 0);
    }

    #[test]
    fn the_committed_files_have_the_fields_of_googles_key_file() {
        for json in [SERVICE_ACCOUNT_JSON, UNREGISTERED_SERVICE_ACCOUNT_JSON] {
            let file: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            for field in [
                "type",
                "project_id",
                "private_key_id",
                "private_key",
                "client_email",
                "client_id",
                "auth_uri",
                "token_uri",
                "auth_provider_x509_cert_url",
                "client_x509_cert_url",
            ] {
                assert!(file[field].is_string(), "{field}");
            }
            assert_eq!(file["type"], "service_account");
            assert_eq!(file["token_uri"], "https://oauth2.googleapis.com/token");
            assert_eq!(file["private_key_id"].as_str().map(str::len), Some(40));
        }
    }

    #[test]
    fn a_key_that_is_not_pkcs8_rsa_is_refused() {
        let mut malformed: serde_json::Value =
            serde_json::from_str(SERVICE_ACCOUNT_JSON).unwrap_or_default();
        malformed["private_key"] = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n".into();
        assert!(ServiceAccountKey::from_json(&malformed.to_string()).is_err());
        let not_a_service_account = SERVICE_ACCOUNT_JSON.replace("service_account", "user");
        assert!(ServiceAccountKey::from_json(&not_a_service_account).is_err());
    }
}
