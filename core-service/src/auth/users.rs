//! Users: one per provider identity, a unique nickname picked at first login, the profile
//! (`GET/PATCH /v1/me`) and push devices.

use nene_domain::users::{Bio, Nickname, default_nickname};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{AuthError, DEFAULT_NICKNAME_TRIES_MAX, oauth::Provider};

/// Who signed in (part of the `AUTH_CALLBACK` answer, so its wire type).
pub use nene_domain::internal_api::auth::SignedInUser;

/// The user of a provider identity, created (with a unique default nickname) on first login.
///
/// # Errors
/// `Database`; `NicknameTaken` only if every default nickname tried was taken.
pub async fn find_or_create_in_tx(
    conn: &mut PgConnection,
    provider: Provider,
    provider_user_id: &str,
) -> Result<SignedInUser, AuthError> {
    if let Some(user) = find_in_tx(conn, provider, provider_user_id).await? {
        return Ok(user);
    }
    let id = format!("u_{}", Uuid::now_v7().simple());
    let mut nickname = None;
    for _ in 0..DEFAULT_NICKNAME_TRIES_MAX {
        let candidate = default_nickname(Uuid::new_v4().as_u128());
        // DO NOTHING rather than an error: a taken nickname must not abort the transaction.
        let inserted = sqlx::query(
            "INSERT INTO users (id, nickname) VALUES ($1, $2) \
             ON CONFLICT ON CONSTRAINT users_nickname_unique DO NOTHING",
        )
        .bind(&id)
        .bind(&candidate)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            nickname = Some(candidate);
            break;
        }
    }
    let nickname = nickname.ok_or(AuthError::NicknameTaken)?;
    let linked = sqlx::query(
        "INSERT INTO user_identities (provider, provider_user_id, user_id) VALUES ($1, $2, $3) \
         ON CONFLICT (provider, provider_user_id) DO NOTHING",
    )
    .bind(provider)
    .bind(provider_user_id)
    .bind(&id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !linked {
        // A concurrent first login of the same identity won: use its user, drop ours.
        sqlx::query!("DELETE FROM users WHERE id = $1", id)
            .execute(&mut *conn)
            .await?;
        return find_in_tx(conn, provider, provider_user_id)
            .await?
            .ok_or(AuthError::UnknownUser);
    }
    Ok(SignedInUser {
        id,
        nickname,
        is_new: true,
    })
}

async fn find_in_tx(
    conn: &mut PgConnection,
    provider: Provider,
    provider_user_id: &str,
) -> Result<Option<SignedInUser>, AuthError> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT u.id, u.nickname FROM user_identities i JOIN users u ON u.id = i.user_id \
         WHERE i.provider = $1 AND i.provider_user_id = $2",
    )
    .bind(provider)
    .bind(provider_user_id)
    .fetch_optional(conn)
    .await?;
    Ok(found.map(|(id, nickname)| SignedInUser {
        id,
        nickname,
        is_new: false,
    }))
}

/// The profile of `GET /v1/me` (edge/openapi.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Me {
    pub id: String,
    pub nickname: String,
    pub bio: String,
    pub created_at: String,
}

/// A profile change: absent fields stay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeChange {
    #[serde(default)]
    pub nickname: Option<Nickname>,
    #[serde(default)]
    pub bio: Option<Bio>,
}

const ME_COLUMNS: &str = r#"id, nickname, bio, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at"#;

/// # Errors
/// `UnknownUser`, `Database`.
pub async fn me(db: &PgPool, user: &str) -> Result<Me, AuthError> {
    sqlx::query_as(&format!("SELECT {ME_COLUMNS} FROM users WHERE id = $1"))
        .bind(user)
        .fetch_optional(db)
        .await?
        .ok_or(AuthError::UnknownUser)
}

/// # Errors
/// `NicknameTaken`, `UnknownUser`, `Database`.
pub async fn change_me(db: &PgPool, user: &str, change: &MeChange) -> Result<Me, AuthError> {
    let updated: Option<Me> = sqlx::query_as(&format!(
        "UPDATE users SET nickname = COALESCE($2, nickname), bio = COALESCE($3, bio) \
         WHERE id = $1 RETURNING {ME_COLUMNS}"
    ))
    .bind(user)
    .bind(change.nickname.as_ref().map(Nickname::as_str))
    .bind(change.bio.as_ref().map(Bio::as_str))
    .fetch_optional(db)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("users_nickname_unique") => {
            AuthError::NicknameTaken
        }
        _ => AuthError::Database(error),
    })?;
    updated.ok_or(AuthError::UnknownUser)
}

/// A device's platform, as the API names it and `user_devices.platform` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "device_platform", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum DevicePlatform {
    Web,
    Ios,
    Android,
}

impl DevicePlatform {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DevicePlatform::Web => "web",
            DevicePlatform::Ios => "ios",
            DevicePlatform::Android => "android",
        }
    }
}

/// Longest device id and push token accepted (as the schema).
pub const DEVICE_ID_LEN_MAX: usize = 128;
pub const PUSH_TOKEN_LEN_MAX: usize = 4_096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub platform: DevicePlatform,
    pub token: String,
}

/// Registers (or updates) a push device; `true` when it is new.
///
/// # Errors
/// `InvalidDevice` (empty or over-long id or token), `UnknownUser`, `Database`.
pub async fn put_device(
    db: &PgPool,
    user: &str,
    device_id: &str,
    device: &Device,
) -> Result<bool, AuthError> {
    let valid = (1..=DEVICE_ID_LEN_MAX).contains(&device_id.len())
        && (1..=PUSH_TOKEN_LEN_MAX).contains(&device.token.len());
    if !valid {
        return Err(AuthError::InvalidDevice);
    }
    let created: bool = sqlx::query_scalar(
        "INSERT INTO user_devices (user_id, device_id, platform, token) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, device_id) DO UPDATE \
             SET platform = EXCLUDED.platform, token = EXCLUDED.token, updated_at = now() \
         RETURNING (xmax = 0)",
    )
    .bind(user)
    .bind(device_id)
    .bind(device.platform)
    .bind(&device.token)
    .fetch_one(db)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => AuthError::UnknownUser,
        _ => AuthError::Database(error),
    })?;
    Ok(created)
}

/// Removes a push device; removing an absent one is not an error (the result is the same).
///
/// # Errors
/// `Database`.
pub async fn delete_device(db: &PgPool, user: &str, device_id: &str) -> Result<(), AuthError> {
    sqlx::query("DELETE FROM user_devices WHERE user_id = $1 AND device_id = $2")
        .bind(user)
        .bind(device_id)
        .execute(db)
        .await?;
    Ok(())
}
