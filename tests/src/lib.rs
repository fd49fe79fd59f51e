//! Integration-test support for understudy.
//!
//! [`emulator`] is a Kubernetes API server emulator: a real HTTP(S) server speaking the
//! Kubernetes REST API for Lease, Pod, Event and discovery, with resourceVersion semantics,
//! watches, `Status` errors and fault injection. The product and third-party clients
//! (kubectl, the official Python client) reach it through an ordinary kubeconfig; the
//! `kube-emulator` binary serves it to scripts. See `docs/emulator.md`.

#![forbid(unsafe_code)]

pub mod emulator;
