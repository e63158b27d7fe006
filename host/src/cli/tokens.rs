//! `stask tokens …`: create (the token is printed once), list, revoke.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use stask_storage::Store;

use super::print_json;
use crate::auth::Role;
use crate::ops::accounts;
use crate::views::TokenView;

#[derive(Debug, Subcommand)]
pub(super) enum TokensCommand {
    /// Create an API token. The token goes to stdout alone (TOKEN=$(stask tokens
    /// create …) works) and is never shown again: only its hash is stored.
    Create {
        /// admin, operator, viewer, or metrics (may read GET /metrics only: for a
        /// Prometheus scraper).
        #[arg(long, value_parser = super::users::parse_role)]
        role: Role,
        /// A name for it (default token-ID); its tasks are started by `token:NAME`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token: requests with it are refused from now on.
    Revoke {
        /// Token id (see `stask tokens list`).
        id: i64,
    },
}

fn time(ms: Option<i64>) -> String {
    use chrono::TimeZone;
    match ms.map(|ms| chrono::Local.timestamp_millis_opt(ms)) {
        Some(chrono::LocalResult::Single(t)) => t.format("%Y-%m-%d %H:%M").to_string(),
        _ => "-".into(),
    }
}

pub(super) fn run(store: &mut dyn Store, cmd: TokensCommand, json: bool) -> Result<()> {
    match cmd {
        TokensCommand::Create { role, name } => {
            let (rec, token) = accounts::create_token(store, name.as_deref(), role, Some("cli"))?;
            if json {
                print_json(
                    &json!({ "id": rec.id, "name": rec.name, "role": rec.role, "token": token }),
                )?;
            } else {
                eprintln!(
                    "Token {} '{}' (role {}) created. It is shown only now; keep it safe:",
                    rec.id, rec.name, rec.role
                );
                println!("{token}");
            }
        }
        TokensCommand::List => {
            let tokens = store.list_tokens()?;
            if json {
                let list: Vec<TokenView> = tokens.iter().map(TokenView::new).collect();
                return print_json(&list);
            }
            if tokens.is_empty() {
                println!(
                    "No tokens. Create one with `stask tokens create --role viewer --name NAME`."
                );
                return Ok(());
            }
            let width = tokens
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!(
                "{:>4}  {:<width$}  {:<8}  {:<16}  {:<16}  STATE",
                "ID", "NAME", "ROLE", "CREATED", "LAST USED"
            );
            for t in &tokens {
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {}", time(Some(at))),
                    None => "active".to_owned(),
                };
                println!(
                    "{:>4}  {:<width$}  {:<8}  {:<16}  {:<16}  {state}",
                    t.id,
                    t.name,
                    t.role,
                    time(Some(t.created_at)),
                    time(t.last_used_at)
                );
            }
        }
        TokensCommand::Revoke { id } => {
            accounts::revoke_token(store, id)?;
            if json {
                print_json(&json!({ "id": id, "revoked": true }))?;
            } else {
                println!("Token {id} revoked.");
            }
        }
    }
    Ok(())
}
