//! Integration-test support for understudy.
//!
//! [`emulator`] is a Kubernetes API server emulator: a real HTTP(S) server speaking the
//! Kubernetes REST API for Lease, Pod, Event and discovery, with resourceVersion semantics,
//! watches, `Status` errors and fault injection. The product and third-party clients
//! (kubectl, the official Python client) reach it through an ordinary kubeconfig; the
//! `kube-emulator` binary serves it to scripts. See `docs/emulator.md`.
//!
//! [`cluster`] assembles a Kubernetes-shaped cluster on one machine from real parts —
//! network namespaces as pods, nginx, the `understudy` sidecar, an iptables VIP, the
//! emulator — for the scenario tests (`tests/cluster/main.rs`) and the demo (needs root).
//!
//! [`manifest`] reads the `deploy/` manifests (built with `kubectl kustomize`), so that tests
//! start the sidecar with the arguments and environment users apply.
//!
//! [`pgbench`] runs `pgbench -C` as the client of PostgreSQL failover tests and checks what
//! each server committed.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod emulator;
pub mod kubeconfig;
pub mod manifest;
pub mod pgbench;
