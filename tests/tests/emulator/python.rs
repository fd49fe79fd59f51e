//! Fidelity with the official Kubernetes Python client (`pip install kubernetes`): it reads,
//! replaces and watches a Lease and gets a 409 for a stale resourceVersion.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;
use understudy_tests::emulator::{Emulator, EmulatorOptions};

#[tokio::test]
async fn the_python_client_reads_replaces_and_gets_409_on_a_stale_write() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/lease_client.py");
    let probe = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "the Python `kubernetes` package is missing; install it with `pip install kubernetes`\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig("python", &kubeconfig).unwrap();
    let run = Command::new("python3")
        .arg(&script)
        .arg(&kubeconfig)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the script finished")
        .expect("python3 ran");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{} failed:\n{stderr}\n{stdout}",
        script.display()
    );
    assert!(stdout.contains("python client: ok"), "{stdout}");
    let stats = emu.stats();
    assert_eq!(
        stats.count("python", "update", "leases"),
        2,
        "one replace and one stale replace"
    );
    assert_eq!(stats.count("python", "watch", "leases"), 1);
}
