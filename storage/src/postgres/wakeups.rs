//! Wake-ups on PostgreSQL: `NOTIFY` on a channel named after the schema, sent inside
//! the transaction that makes work claimable (so it is delivered exactly when the work
//! is visible, and not at all when the transaction rolls back), and `LISTEN` on a
//! connection of the listener's own. Pending notifications of one channel are
//! delivered as they come; a listener counts several as one wake-up.

use std::sync::Mutex;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::GenericClient;

use super::{Context, PgStore};
use crate::error::StoreError;
use crate::wakeups::{WakeListener, Wakeups};

/// The channel's name: `stask_work_` and a hash of the schema, so stores of different
/// schemas in one database (tests, or several installations) do not wake each other,
/// whatever the schema's length (a channel name has at most 63 bytes, and `LISTEN`
/// would silently cut a longer one while `pg_notify` refuses it).
const CHANNEL_SQL: &str = "'stask_work_' || md5(current_schema())";

/// Queues a wake-up in the caller's transaction (sent when it commits).
pub(crate) fn notify_in(tx: &mut impl GenericClient) -> Result<(), StoreError> {
    tx.execute(&format!("SELECT pg_notify({CHANNEL_SQL}, '')"), &[])
        .context("queue a wake-up")?;
    Ok(())
}

struct Listener {
    /// The listening connection; `None` after it was lost, until it is opened again.
    client: Mutex<Option<postgres::Client>>,
    /// Where to connect, with the store's TLS.
    target: super::tls::Target,
}

impl Listener {
    /// Opens a connection and listens on the schema's channel.
    fn connect(target: &super::tls::Target) -> Result<postgres::Client, StoreError> {
        let mut client = target.connect("connect for wake-ups")?;
        let channel: String = client
            .query_one(&format!("SELECT {CHANNEL_SQL}"), &[])
            .context("name the wake-up channel")?
            .get(0);
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .context("listen for wake-ups")?;
        Ok(client)
    }
}

impl WakeListener for Listener {
    fn wait(&self, timeout: Duration) -> bool {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(postgres::Client::is_closed) {
            // The connection was lost (a server restart, a terminated backend): wake-ups
            // sent meanwhile are gone, so a new connection counts as one — whoever
            // waits looks for work now. Until the server answers, wait out the timeout
            // instead of spinning.
            *slot = None;
            match Listener::connect(&self.target) {
                Ok(client) => {
                    *slot = Some(client);
                    return true;
                }
                Err(_) => {
                    drop(slot);
                    std::thread::sleep(timeout.min(Duration::from_secs(1)));
                    return false;
                }
            }
        }
        let client = slot.as_mut().expect("connected above");
        let mut notifications = client.notifications();
        let woke = match notifications
            .timeout_iter(timeout.max(Duration::from_millis(1)))
            .next()
        {
            Ok(Some(_)) => true,
            Ok(None) => false,
            // Lost while waiting: the next wait connects again.
            Err(_) => return false,
        };
        if woke {
            // Several pending wake-ups count as one.
            let mut rest = notifications.iter();
            while let Ok(Some(_)) = rest.next() {}
        }
        woke
    }
}

impl Wakeups for PgStore {
    fn notify_work(&self) {
        if let Ok(mut client) = self.client() {
            let _ = notify_in(&mut *client);
        }
    }

    fn listen(&self) -> Result<Box<dyn WakeListener>, StoreError> {
        let client = Listener::connect(&self.target)?;
        Ok(Box::new(Listener {
            client: Mutex::new(Some(client)),
            target: self.target.clone(),
        }))
    }
}
