//! Client identities: one bearer token per name, as a static token file gives a real server.

use std::collections::HashMap;
use std::sync::Mutex;

use super::rng;

/// The name whose token also opens the admin endpoint.
pub(crate) const ADMIN: &str = "admin";

#[derive(Default)]
struct Maps {
    by_token: HashMap<String, String>,
    by_name: HashMap<String, String>,
}

/// The registered clients.
#[derive(Default)]
pub(crate) struct Clients(Mutex<Maps>);

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `name` (idempotent) and return its token.
    pub fn add(&self, name: &str) -> String {
        let mut m = self.lock();
        if let Some(t) = m.by_name.get(name) {
            return t.clone();
        }
        let token = rng::random_token();
        m.by_name.insert(name.to_string(), token.clone());
        m.by_token.insert(token.clone(), name.to_string());
        token
    }

    /// The client a bearer token belongs to.
    pub fn name_for(&self, token: &str) -> Option<String> {
        self.lock().by_token.get(token).cloned()
    }
}
