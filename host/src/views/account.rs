//! How users and API tokens are shown: never a password hash or a token's hash.

use serde::Serialize;
use stask_storage::{TokenRecord, UserRecord};

/// A user (the OpenAPI schema `User`).
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    /// Login name.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

impl UserView {
    /// The view of a stored user.
    pub fn new(u: &UserRecord) -> UserView {
        UserView {
            name: u.name.clone(),
            role: u.role.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// An API token without its secret (the OpenAPI schema `Token`).
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    /// Id (what `tokens revoke` and `DELETE /tokens/{id}` take).
    pub id: i64,
    /// Name; its tasks are started by `token:NAME`.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Who created it.
    pub created_by: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Last used (ms).
    pub last_used_at: Option<i64>,
    /// Revoked (ms).
    pub revoked_at: Option<i64>,
}

impl TokenView {
    /// The view of a stored token.
    pub fn new(t: &TokenRecord) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name.clone(),
            role: t.role.clone(),
            created_by: t.created_by.clone(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A token just created, with its secret (shown this once).
#[derive(Debug, Clone, Serialize)]
pub struct NewTokenView {
    /// The token's record.
    #[serde(flatten)]
    pub info: TokenView,
    /// The secret to send as `Authorization: Bearer …`.
    pub token: String,
}
