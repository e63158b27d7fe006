//! Hosts: registration, leases, clean stops and forgetting silent hosts.

use super::Harness;
use crate::HostRecord;

fn host(id: &str, libraries: &[&str], started_at: i64) -> HostRecord {
    HostRecord {
        id: id.into(),
        name: format!("machine-of-{id}"),
        version: "1.2.3".into(),
        capacity: 4,
        libraries: libraries.iter().map(|s| s.to_string()).collect(),
        started_at,
        renewed_at: None,
    }
}

pub fn hosts_register_with_their_libraries_and_show_their_lease(h: &dyn Harness) {
    let mut s = h.open();
    s.register_host(&host("a/1/1", &["aa", "bb"], 10)).unwrap();
    s.register_host(&host("b/2/2", &[], 20)).unwrap();
    s.renew_lease("a/1/1", 500).unwrap();
    let hosts = s.list_hosts().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0].id, "a/1/1");
    assert_eq!(hosts[0].libraries, ["aa", "bb"]);
    assert_eq!(hosts[0].renewed_at, Some(500));
    assert_eq!(hosts[0].name, "machine-of-a/1/1");
    assert_eq!((hosts[0].capacity, hosts[0].started_at), (4, 10));
    assert_eq!(hosts[1].renewed_at, None);
    // Registering again replaces the record (new libraries after a discover).
    s.register_host(&host("a/1/1", &["cc"], 10)).unwrap();
    let again = h.open().list_hosts().unwrap();
    assert_eq!(again[0].libraries, ["cc"]);
    assert_eq!(again.len(), 2);
    s.remove_host("b/2/2").unwrap();
    s.remove_host("nobody").unwrap();
    assert_eq!(s.list_hosts().unwrap().len(), 1);
}

pub fn silent_hosts_are_forgotten(h: &dyn Harness) {
    let mut s = h.open();
    s.register_host(&host("old/1/1", &[], 10)).unwrap();
    s.register_host(&host("quiet/2/2", &[], 10)).unwrap();
    s.register_host(&host("new/3/3", &[], 10)).unwrap();
    s.renew_lease("old/1/1", 100).unwrap();
    s.renew_lease("new/3/3", 5_000).unwrap();
    assert_eq!(s.forget_hosts_silent_since(1_000).unwrap(), 2);
    let left: Vec<String> = s.list_hosts().unwrap().into_iter().map(|h| h.id).collect();
    assert_eq!(left, ["new/3/3"]);
}
