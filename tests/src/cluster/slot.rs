//! Run slots: which subnet, VIP and name prefix a harness run owns, so that two runs on one
//! machine (two test processes, a test and the demo) never collide.
//!
//! Slot `N` (1..=[`SLOTS`]) owns the pod subnet `198.18.N.0/24` (bridge at `.1`), the VIP
//! `198.19.N.1`, and every network namespace, link and iptables chain named `us-N-…`. Slots
//! are handed out under an exclusive lock on `/run/understudy-harness/lock`; a slot file
//! records the owning process and its *reaper*.
//!
//! The reaper is a small `sh` in its own process group that waits for EOF on a pipe from the
//! owner and then runs the slot's clean-up script. The pipe closes when the owner exits for
//! any reason — a panic, Ctrl-C, a test runner's timeout, even SIGKILL — so clean-up happens
//! without anyone having to remember it. A slot is live while its owner or its reaper is;
//! leftovers of slots that are not live are swept when the next slot is claimed.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::{HarnessError, cleanup};

/// Where slot files and the lock live (tmpfs: gone after a reboot, like the namespaces).
pub const STATE_DIR: &str = "/run/understudy-harness";
/// How many runs may exist at once.
pub const SLOTS: u8 = 200;

/// A claimed slot. Dropping it leaves the reaper armed: clean-up then happens when this
/// process exits. [`Slot::release`] cleans up now and frees the slot.
pub struct Slot {
    n: u8,
    reaper: Option<(Child, ChildStdin)>,
}

// === impl Slot ===

impl Slot {
    /// Claims the lowest free slot, sweeping what dead runs left behind first.
    pub fn claim() -> Result<Slot, HarnessError> {
        let dir = Path::new(STATE_DIR);
        fs::create_dir_all(dir).map_err(|e| HarnessError::io("create", dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| HarnessError::io("open", &lock_path, e))?;
        // Held until the end of this function: claims are serialized across processes.
        lock.lock()
            .map_err(|e| HarnessError::io("lock", &lock_path, e))?;

        let live = live_slots(dir);
        for n in cleanup::leftover_slots()?
            .into_iter()
            .chain(dead_slot_files(dir, &live))
            .filter(|n| !live.contains(n))
            .collect::<BTreeSet<_>>()
        {
            cleanup::run_blocking(n)?;
            let _ = fs::remove_file(slot_file(n));
        }
        let n = (1..=SLOTS)
            .find(|n| !live.contains(n))
            .ok_or(HarnessError::NoSlot(SLOTS))?;
        let (child, stdin) = spawn_reaper(n)?;
        let record = format!(
            "{} {} {} {}\n",
            std::process::id(),
            start_time(std::process::id()).unwrap_or(0),
            child.id(),
            start_time(child.id()).unwrap_or(0)
        );
        let path = slot_file(n);
        File::create(&path)
            .and_then(|mut f| f.write_all(record.as_bytes()))
            .map_err(|e| HarnessError::io("write", &path, e))?;
        drop(lock);
        Ok(Slot {
            n,
            reaper: Some((child, stdin)),
        })
    }

    /// The slot number `N`.
    pub fn number(&self) -> u8 {
        self.n
    }

    /// The prefix of every namespace, link and chain of this run: `us-N-`.
    pub fn prefix(&self) -> String {
        prefix(self.n)
    }

    /// The bridge's address, `198.18.N.1`: the pods' gateway and the emulator's address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 1)
    }

    /// Pod address number `host` (2..=254) in this run's subnet.
    pub fn pod_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, host)
    }

    /// The Service's cluster IP, `198.19.N.1`.
    pub fn vip(&self) -> Ipv4Addr {
        vip(self.n)
    }

    /// Records the run directory, so that clean-up removes it too (a run killed before it
    /// could remove its own directory leaves nothing behind).
    pub fn record_dir(&self, dir: &Path) -> Result<(), HarnessError> {
        let file = dir_file(self.n);
        fs::write(&file, dir.as_os_str().as_encoded_bytes())
            .map_err(|e| HarnessError::io("write", &file, e))
    }

    /// Stops clean-up from removing the run directory (to keep a failed run's logs).
    pub fn forget_dir(&self) {
        let _ = fs::remove_file(dir_file(self.n));
    }

    /// Cleans up now (processes, namespaces, links, chains), waits for that, and frees the
    /// slot.
    pub fn release(mut self) -> Result<(), HarnessError> {
        self.release_now()
    }

    fn release_now(&mut self) -> Result<(), HarnessError> {
        let Some((mut child, stdin)) = self.reaper.take() else {
            return Ok(());
        };
        // EOF on the pipe: the reaper runs the clean-up script and removes the slot file.
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    return Err(HarnessError::timeout(
                        format!("the clean-up of slot {}", self.n),
                        Duration::from_secs(30),
                    ));
                }
                Err(e) => return Err(HarnessError::io("wait for reaper", slot_file(self.n), e)),
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((child, stdin)) = self.reaper.take() {
            // Keep the pipe open until this process exits: whatever a still-running task
            // creates after this point is swept then. Forgetting leaks two handles, once.
            std::mem::forget(stdin);
            std::mem::forget(child);
        }
    }
}

/// `us-N-`.
pub(crate) fn prefix(n: u8) -> String {
    format!("us-{n}-")
}

/// `198.19.N.1`.
pub(crate) fn vip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, n, 1)
}

/// Where slot `n` records its run directory.
pub(crate) fn dir_file(n: u8) -> PathBuf {
    Path::new(STATE_DIR).join(format!("slot-{n}.dir"))
}

fn slot_file(n: u8) -> PathBuf {
    Path::new(STATE_DIR).join(format!("slot-{n}"))
}

fn spawn_reaper(n: u8) -> Result<(Child, ChildStdin), HarnessError> {
    let script = format!(
        "cat >/dev/null\n{}\nrm -f {}\n",
        cleanup::script(n),
        slot_file(n).display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(format!("understudy-reaper-{n}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C in the terminal interrupts the run, not the
        // clean-up that follows it.
        .process_group(0)
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            command: format!("sh (reaper of slot {n})"),
            source,
        })?;
    let stdin = child.stdin.take().expect("stdin was piped");
    Ok((child, stdin))
}

/// Slots whose owner or reaper is still running.
fn live_slots(dir: &Path) -> BTreeSet<u8> {
    slot_files(dir)
        .into_iter()
        .filter(|(_, record)| {
            let f: Vec<u64> = record
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            f.chunks(2).any(|pair| match *pair {
                [pid, start] => u32::try_from(pid).is_ok_and(|pid| alive(pid, start)),
                _ => false,
            })
        })
        .map(|(n, _)| n)
        .collect()
}

fn dead_slot_files(dir: &Path, live: &BTreeSet<u8>) -> Vec<u8> {
    slot_files(dir)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !live.contains(n))
        .collect()
}

fn slot_files(dir: &Path) -> Vec<(u8, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix("slot-")?.parse().ok()?;
            Some((n, fs::read_to_string(e.path()).unwrap_or_default()))
        })
        .collect()
}

/// True if `pid` runs and started at `start` (so a recycled pid does not count).
fn alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it start at 3.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests;
