//! Clean-up of a run: every process in its pod namespaces, the namespaces, its links (the
//! bridge and veths) and its iptables chains with the jumps into them.
//!
//! One shell script per slot does it all, so that the same steps run whether the run ends
//! normally ([`super::Slot::release`]), by a panic (`Drop`), by a signal or SIGKILL (the
//! slot's reaper, after the owner is gone), or not at all (the sweep when a later run claims
//! a slot). The script only touches names with the slot's `us-N-` prefix (and the run
//! directory the slot records, see [`super::Slot::record_dir`]) and is idempotent.

use std::collections::BTreeSet;

use super::slot::prefix;
use super::{HarnessError, command};

/// The built-in chains a run may hook its own chains into.
const HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
/// The tables a run adds chains to.
const TABLES: [&str; 2] = ["nat", "filter"];

/// The clean-up script of slot `n` (POSIX sh; errors of single steps are ignored so that
/// the remaining steps still run).
pub(crate) fn script(n: u8) -> String {
    let p = prefix(n);
    let hooks = HOOKS.join(" ");
    let tables = TABLES.join(" ");
    format!(
        r#"p='{p}'
for ns in $(ip netns list 2>/dev/null | awk '{{print $1}}' | grep "^$p"); do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
done
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{{print $2}}' | cut -d@ -f1 | grep "^$p"); do
  ip link del "$l" 2>/dev/null
done
for t in {tables}; do
  chains=$(iptables -w -t "$t" -S 2>/dev/null | awk -v p="$p" '$1 == "-N" && index($2, p) == 1 {{print $2}}')
  for c in $chains; do
    for h in {hooks}; do
      while iptables -w -t "$t" -D "$h" -j "$c" 2>/dev/null; do :; done
    done
  done
  for c in $chains; do iptables -w -t "$t" -F "$c" 2>/dev/null; done
  for c in $chains; do iptables -w -t "$t" -X "$c" 2>/dev/null; done
done
d=$(cat '{dir_file}' 2>/dev/null)
case "$d" in */understudy-cluster-{n}-*) rm -rf "$d" ;; esac
rm -f '{dir_file}'
true"#,
        dir_file = super::slot::dir_file(n).display()
    )
}

/// Runs slot `n`'s clean-up script and waits for it.
pub(crate) fn run_blocking(n: u8) -> Result<(), HarnessError> {
    command::run_blocking("sh", &["-c", &script(n)]).map(drop)
}

/// Slots that have namespaces, links or chains on this machine (live or not).
pub fn leftover_slots() -> Result<BTreeSet<u8>, HarnessError> {
    let mut names = Vec::new();
    let netns = command::run_blocking("ip", &["netns", "list"])?;
    names.extend(
        netns
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from),
    );
    let links = command::run_blocking("ip", &["-o", "link", "show"])?;
    names.extend(links.lines().filter_map(|l| {
        let name = l.split(": ").nth(1)?;
        Some(name.split('@').next()?.to_string())
    }));
    for table in TABLES {
        let rules = command::run_blocking("iptables", &["-w", "-t", table, "-S"])?;
        names.extend(
            rules
                .lines()
                .filter_map(|l| l.strip_prefix("-N "))
                .map(String::from),
        );
    }
    Ok(names.iter().filter_map(|n| slot_of(n)).collect())
}

/// `us-N-…` -> `N`.
fn slot_of(name: &str) -> Option<u8> {
    let rest = name.strip_prefix("us-")?;
    let (n, tail) = rest.split_once('-')?;
    (!tail.is_empty()).then_some(())?;
    n.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests;
