//! Users of the HTTP API and API tokens: creating, changing and removing them, with
//! every check before anything is stored. Only hashes of passwords and tokens are
//! stored ([`crate::auth`] makes them); the last admin always stays.

use anyhow::Result;
use stask_storage::{now_ms, Store, TokenRecord, UserRecord, SCHEDULE_STARTED_BY};

use crate::auth::{
    hash_password, random_password, random_secret, secret_hash, verify_password, Role,
    MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, TOKEN_PREFIX,
};
use crate::problem::Problem;

/// Checks a new user name: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit;
/// `schedule` is reserved (tasks created by schedules are started by it), and `:`
/// never appears, so no user can be mistaken for a token (`token:NAME`).
pub fn check_user_name(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !ok {
        return Err(Problem::invalid(
            "name",
            "invalid_name",
            format!("'{}' is not a valid user name: use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", crate::problem::shown_input(name)),
        ));
    }
    if name == SCHEDULE_STARTED_BY {
        return Err(Problem::invalid(
            "name",
            "reserved_name",
            format!("'{name}' is reserved (tasks created by schedules are started by it)"),
        ));
    }
    Ok(())
}

/// Checks a new password's length (the message never repeats the password).
pub fn check_password(password: &str, field: &str) -> Result<(), Problem> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Problem::invalid(
            field,
            "password_too_short",
            format!("the password must have at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(Problem::invalid(
            field,
            "password_too_long",
            format!("the password must have at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks a token name: the same characters as user names.
pub fn check_token_name(name: &str) -> Result<(), Problem> {
    check_user_name(name)
        .map_err(|p| Problem::invalid("name", p.code, p.message.replace("user name", "token name")))
}

/// The error for an unknown user.
pub fn no_user(name: &str) -> anyhow::Error {
    Problem::not_found(
        "user_not_found",
        format!("no user '{}'", crate::problem::shown_input(name)),
    )
    .hint("see `stask users list`")
    .into()
}

/// The error for a user name that is taken.
pub fn user_exists(name: &str) -> anyhow::Error {
    Problem::conflict(
        "user_exists",
        format!("a user named '{name}' already exists"),
    )
    .into()
}

/// Refuses the `metrics` role for a user: it is for API tokens of scrapers only.
fn check_user_role(role: Role) -> Result<(), Problem> {
    if role == Role::Metrics {
        return Err(Problem::invalid(
            "role",
            "invalid_role",
            "the metrics role is for API tokens only (`stask tokens create --role metrics`); users are admin, operator or viewer",
        ));
    }
    Ok(())
}

/// Creates a user after checking name, role and password.
pub fn add_user(store: &dyn Store, name: &str, role: Role, password: &str) -> Result<UserRecord> {
    check_user_name(name)?;
    check_user_role(role)?;
    check_password(password, "password")?;
    let hash = hash_password(password)?;
    store
        .insert_user(name, role.as_str(), &hash, now_ms())?
        .ok_or_else(|| user_exists(name))
}

/// Sets a user's password (ending their sessions).
pub fn set_password(store: &mut dyn Store, name: &str, password: &str) -> Result<()> {
    check_password(password, "password")?;
    let hash = hash_password(password)?;
    if !store.set_user_password(name, &hash, now_ms())? {
        return Err(no_user(name));
    }
    Ok(())
}

/// Users change their own password by giving the current one; the user's sessions end.
pub fn change_own_password(
    store: &mut dyn Store,
    name: &str,
    current: &str,
    password: &str,
) -> Result<()> {
    let user = store.get_user(name)?.ok_or_else(|| no_user(name))?;
    if !verify_password(&user.password_hash, current) {
        return Err(Problem::invalid(
            "current_password",
            "invalid_credentials",
            "current_password is missing or wrong",
        )
        .into());
    }
    set_password(store, name, password)
}

/// Changes a user's role; the last admin keeps theirs.
pub fn set_role(store: &mut dyn Store, name: &str, role: Role) -> Result<()> {
    check_user_role(role)?;
    match store.set_user_role(name, role.as_str(), now_ms())? {
        None => Err(no_user(name)),
        Some(false) => Err(Problem::conflict(
            "last_admin",
            format!("'{name}' is the last admin; make another user admin first"),
        )
        .into()),
        Some(true) => Ok(()),
    }
}

/// Removes a user; the last admin stays.
pub fn remove_user(store: &mut dyn Store, name: &str) -> Result<()> {
    match store.delete_user(name)? {
        None => Err(no_user(name)),
        Some(false) => Err(Problem::conflict(
            "last_admin",
            format!("'{name}' is the last admin; make another user admin first"),
        )
        .into()),
        Some(true) => Ok(()),
    }
}

/// The tokens `name` created that are still valid, as `ID (NAME)`: a removed user's
/// tokens keep working (each is a principal of its own), so removing a user names
/// them for the operator to revoke. Best effort: a failed read gives an empty list,
/// since the removal it follows is already done.
pub fn tokens_created_by(store: &dyn Store, name: &str) -> Vec<String> {
    store
        .list_tokens()
        .map(|tokens| {
            tokens
                .into_iter()
                .filter(|t| t.revoked_at.is_none() && t.created_by.as_deref() == Some(name))
                .map(|t| format!("{} ({})", t.id, t.name))
                .collect()
        })
        .unwrap_or_default()
}

/// Name of the first user, created by the service when there is none.
pub const FIRST_ADMIN: &str = "admin";

/// Creates user `admin` (role admin) with a random password when there are no users
/// yet; returns the password (to be shown once) if it did.
pub fn ensure_first_admin(store: &mut dyn Store) -> Result<Option<String>> {
    if store.count_users()? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let hash = hash_password(&password)?;
    Ok(store
        .insert_first_user(FIRST_ADMIN, Role::Admin.as_str(), &hash, now_ms())?
        .then_some(password))
}

/// Creates an API token; returns its record and the token itself (shown once, never
/// stored).
pub fn create_token(
    store: &mut dyn Store,
    name: Option<&str>,
    role: Role,
    created_by: Option<&str>,
) -> Result<(TokenRecord, String)> {
    if let Some(n) = name {
        check_token_name(n)?;
    }
    let secret = random_secret(TOKEN_PREFIX);
    let rec = store
        .insert_token(
            name,
            role.as_str(),
            &secret_hash(&secret),
            created_by,
            now_ms(),
        )?
        .ok_or_else(|| {
            anyhow::Error::from(Problem::conflict(
                "token_exists",
                format!(
                    "a token named '{}' already exists",
                    name.unwrap_or_default()
                ),
            ))
        })?;
    Ok((rec, secret))
}

/// Revokes an API token by id.
pub fn revoke_token(store: &dyn Store, id: i64) -> Result<()> {
    match store.revoke_token(id, now_ms())? {
        None => Err(
            Problem::not_found("token_not_found", format!("no token {id}"))
                .hint("see `stask tokens list`")
                .into(),
        ),
        Some(false) => {
            Err(Problem::conflict("token_revoked", format!("token {id} is already revoked")).into())
        }
        Some(true) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{problem, Env};

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_user_name("ann.b-c_1").is_ok());
        for bad in ["", "Ann", "-x", "a:b", "a b", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_user_name("schedule").unwrap_err().code,
            "reserved_name"
        );
        assert!(check_token_name("Bad Name")
            .unwrap_err()
            .message
            .contains("token name"));
        assert!(check_password("short", "password").is_err());
    }

    #[test]
    fn the_metrics_role_is_for_tokens_only() {
        let mut env = Env::new();
        let store = &mut *env.store;
        let p = problem(add_user(store, "prom", Role::Metrics, "long enough"));
        assert_eq!((p.code, p.field.as_deref()), ("invalid_role", Some("role")));
        assert!(p.message.contains("tokens"), "{}", p.message);
        add_user(store, "ann", Role::Admin, "long enough").unwrap();
        add_user(store, "bob", Role::Viewer, "long enough").unwrap();
        assert_eq!(
            problem(set_role(store, "bob", Role::Metrics)).code,
            "invalid_role"
        );
        let (rec, _) = create_token(store, Some("prometheus"), Role::Metrics, Some("ann")).unwrap();
        assert_eq!(rec.role, "metrics");
    }

    #[test]
    fn users_and_tokens_live_and_the_last_admin_stays() {
        let mut env = Env::new();
        let store = &mut *env.store;
        add_user(store, "ann", Role::Admin, "long enough").unwrap();
        assert_eq!(
            problem(add_user(store, "ann", Role::Viewer, "long enough")).code,
            "user_exists"
        );
        assert_eq!(problem(remove_user(store, "ann")).code, "last_admin");
        assert_eq!(
            problem(set_role(store, "ann", Role::Viewer)).code,
            "last_admin"
        );
        let p = problem(change_own_password(store, "ann", "wrong", "new password"));
        assert_eq!(p.field.as_deref(), Some("current_password"));
        change_own_password(store, "ann", "long enough", "new password").unwrap();
        let p = problem(set_password(store, "bob", "long enough"));
        assert_eq!(
            (p.code, p.message.as_str()),
            ("user_not_found", "no user 'bob'")
        );
        assert_eq!(p.hint.as_deref(), Some("see `stask users list`"));

        let (rec, secret) = create_token(store, Some("ci"), Role::Viewer, Some("ann")).unwrap();
        assert!(secret.starts_with(TOKEN_PREFIX));
        assert_eq!(
            problem(create_token(store, Some("ci"), Role::Viewer, None)).code,
            "token_exists"
        );
        revoke_token(store, rec.id).unwrap();
        assert_eq!(problem(revoke_token(store, rec.id)).code, "token_revoked");
        let p = problem(revoke_token(store, 999));
        assert_eq!(
            (p.code, p.message.as_str()),
            ("token_not_found", "no token 999")
        );
    }
}
