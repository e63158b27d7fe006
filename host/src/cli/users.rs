//! `stask users …`: add, list, passwd, role, remove. Passwords are read from standard
//! input (`--password-stdin`) or asked for on the terminal without echo, never taken
//! as an argument (arguments end up in shell history and `ps`).

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use stask_storage::Store;

use super::print_json;
use super::terminal::NoEcho;
use crate::auth::Role;
use crate::ops::accounts;
use crate::views::UserView;

#[derive(Debug, Subcommand)]
pub(super) enum UsersCommand {
    /// Create a user of the HTTP API.
    Add {
        /// Login name (lowercase letters, digits, '.', '_', '-').
        name: String,
        /// admin, operator or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from standard input (one line) instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Set a user's password (their browser sessions end).
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from standard input (one line) instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role.
    Role {
        /// Login name.
        name: String,
        /// admin, operator or viewer.
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Remove a user (tasks they started keep their name).
    Remove {
        /// Login name.
        name: String,
    },
}

pub(super) fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse_input(s, "role").map_err(|p| p.message)
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let _guard = NoEcho::new();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The new password: from standard input, or asked twice on the terminal.
fn read_password(name: &str, from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        let first = text.lines().next().unwrap_or("").to_owned();
        if first.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(first);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password on; pass it on standard input with --password-stdin");
    }
    let first = prompt(&format!("New password for {name}: "))?;
    let again = prompt("Repeat the password: ")?;
    if first != again {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

fn time(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        _ => "-".into(),
    }
}

pub(super) fn run(store: &mut dyn Store, cmd: UsersCommand, json: bool) -> Result<()> {
    match cmd {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            // Checked before asking, so a typo in the name costs no typing.
            accounts::check_user_name(&name)?;
            if store.get_user(&name)?.is_some() {
                return Err(accounts::user_exists(&name));
            }
            let password = read_password(&name, password_stdin)?;
            let user = accounts::add_user(store, &name, role, &password)?;
            if json {
                print_json(&json!({ "name": user.name, "role": user.role }))?;
            } else {
                println!("User {} created (role {}).", user.name, user.role);
            }
        }
        UsersCommand::List => {
            let users = store.list_users()?;
            if json {
                let list: Vec<UserView> = users.iter().map(UserView::new).collect();
                return print_json(&list);
            }
            if users.is_empty() {
                println!("No users. `stask serve` creates an admin on its first start, or add one with `stask users add NAME --role admin`.");
                return Ok(());
            }
            let width = users.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
            println!("{:<width$}  {:<8}  CREATED", "NAME", "ROLE");
            for u in &users {
                println!("{:<width$}  {:<8}  {}", u.name, u.role, time(u.created_at));
            }
        }
        UsersCommand::Passwd {
            name,
            password_stdin,
        } => {
            if store.get_user(&name)?.is_none() {
                return Err(accounts::no_user(&name));
            }
            let password = read_password(&name, password_stdin)?;
            accounts::set_password(store, &name, &password)?;
            if json {
                print_json(&json!({ "name": name, "password_changed": true }))?;
            } else {
                println!("Password of {name} changed; their sessions were ended.");
            }
        }
        UsersCommand::Role { name, role } => {
            accounts::set_role(store, &name, role)?;
            if json {
                print_json(&json!({ "name": name, "role": role }))?;
            } else {
                println!("{name} is now {role}.");
            }
        }
        UsersCommand::Remove { name } => {
            accounts::remove_user(store, &name)?;
            let kept = accounts::tokens_created_by(store, &name);
            if json {
                print_json(&json!({ "name": name, "removed": true, "tokens_still_valid": kept }))?;
            } else {
                println!("User {name} removed.");
                if !kept.is_empty() {
                    // On stderr: the tokens are a warning, stdout stays the outcome.
                    eprintln!(
                        "API tokens created by '{name}' stay valid: {}; revoke any that should not with `stask tokens revoke ID`",
                        kept.join(", ")
                    );
                }
            }
        }
    }
    Ok(())
}
