//! Finding elections and reading their Leases: the member Leases by label, the slot Leases by
//! name.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;

use crate::election::{Election, Member, Slot, announced_actives, group_members};
use crate::error::{Error, LEASE_PERMISSIONS, call};
use crate::names::{ELECTION_LABEL, slot_lease_name};

/// The most slots probed for when no member announces the number (`<election>-0` …).
const MAX_PROBED_SLOTS: usize = 64;

/// Leases of one namespace.
pub struct Leases {
    api: Api<Lease>,
    namespace: String,
}

impl Leases {
    /// The Leases of `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Leases {
        Leases {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }

    /// The Lease API of the namespace.
    pub fn api(&self) -> &Api<Lease> {
        &self.api
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Every election with member Leases in the namespace (label [`ELECTION_LABEL`], any
    /// value), read in full, by name.
    pub async fn all(&self, now: Timestamp) -> Result<Vec<Election>, Error> {
        let members = self.members(ELECTION_LABEL).await?;
        let mut out = Vec::new();
        for (name, members) in members {
            out.push(self.read(&name, members, now).await?);
        }
        Ok(out)
    }

    /// Election `name`, read in full; [`Error::NotFound`] when it has neither a Lease nor a
    /// member.
    pub async fn one(&self, name: &str, now: Timestamp) -> Result<Election, Error> {
        let members = self
            .members(&format!("{ELECTION_LABEL}={name}"))
            .await?
            .remove(name)
            .unwrap_or_default();
        self.read(name, members, now).await
    }

    /// Lease `name`, `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Lease>, Error> {
        call(
            &format!("get lease {name}"),
            LEASE_PERMISSIONS,
            self.api.get_opt(name),
        )
        .await
    }

    /// Member Leases matching `selector`, grouped by election.
    async fn members(&self, selector: &str) -> Result<BTreeMap<String, Vec<Member>>, Error> {
        let list = call(
            "list leases",
            LEASE_PERMISSIONS,
            self.api.list(&ListParams::default().labels(selector)),
        )
        .await?;
        Ok(group_members(&list.items))
    }

    /// The slots of election `name` next to its `members`: as many as the members announce,
    /// else the Lease `name`, else `name-0`, `name-1`, … up to the first missing one.
    async fn read(
        &self,
        name: &str,
        members: Vec<Member>,
        now: Timestamp,
    ) -> Result<Election, Error> {
        let mut slots = Vec::new();
        if let Some(actives) = announced_actives(&members, now) {
            for index in 0..actives {
                let lease = slot_lease_name(name, actives, index);
                let found = self.get(&lease).await?;
                slots.push(Slot::from_lease(index, &lease, found.as_ref()));
            }
        } else if let Some(found) = self.get(name).await? {
            slots.push(Slot::from_lease(0, name, Some(&found)));
        } else {
            for index in 0..MAX_PROBED_SLOTS {
                let lease = format!("{name}-{index}");
                let Some(found) = self.get(&lease).await? else {
                    break;
                };
                slots.push(Slot::from_lease(index, &lease, Some(&found)));
            }
        }
        if slots.iter().all(|s| !s.exists) && members.is_empty() {
            return Err(Error::NotFound {
                election: name.to_string(),
                namespace: self.namespace.clone(),
            });
        }
        if slots.is_empty() {
            // Members but no Lease yet: one slot nobody has created.
            slots.push(Slot::from_lease(0, name, None));
        }
        Ok(Election {
            name: name.to_string(),
            slots,
            members,
        })
    }
}
