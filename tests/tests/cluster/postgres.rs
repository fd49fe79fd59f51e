//! TCP mode on the local cluster in front of PostgreSQL: `deploy/examples/postgres-ha` as
//! shipped (Debian's PostgreSQL behind the postgres image's entrypoint in each pod, its
//! password from the example's Secret, understudy with `--mode tcp` in front), `pgbench -C`
//! through the Service's ClusterIP for a minute, in one-second runs, across a planned
//! switchover (the `understudy.io/handover-to` annotation, as an operator writes it). The
//! only failures are in the runs that span the handover, and every transaction the old
//! leader's server committed comes before the new leader's first.

use std::time::{Duration, Instant};

use understudy_tests::cluster::ExampleOptions;
use understudy_tests::pgbench::{self, History};

use super::{Scenario, bounded, exclusive};

/// The example's placeholder password (its `secretGenerator`).
const PASSWORD: &str = "change-me";
/// A pod's PostgreSQL, from inside the pod.
const LOCAL: &str = "postgresql://postgres:change-me@127.0.0.1:5432/postgres";
/// How long pgbench runs through the Service, and how many one-second runs come before the
/// switchover is asked for.
const LOAD: Duration = Duration::from_secs(60);
const RUNS_BEFORE: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pgbench_for_a_minute_across_a_switchover_fails_only_at_the_handover() {
    let name = "postgres-switchover";
    let _serial = exclusive(name).await;
    bounded(name, async {
        let s = Scenario::start(name).await;
        let (app, old) = s.app(ExampleOptions::test("postgres-ha", 2), 2).await;
        let pods = app.live_pods().await.unwrap();
        assert_eq!(pods.len(), 2, "{name}: pods {pods:?}");
        // pgbench's tables in every pod's database (each pod has its own).
        for pod in &pods {
            app.run_in_pod(pod, "pgbench", &["-i", "-q", "-s", "1", LOCAL])
                .await
                .unwrap_or_else(|e| panic!("{name}: pgbench -i in {pod}: {e}"));
        }

        let to = app.service_addr();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let load = tokio::spawn(async move {
            let until = Instant::now() + LOAD;
            while Instant::now() < until {
                if tx.send(pgbench::run(to, Some(PASSWORD)).await).is_err() {
                    break;
                }
            }
        });
        let mut runs = Vec::new();
        while runs.len() < RUNS_BEFORE {
            runs.push(rx.recv().await.expect("the load runs for a minute"));
        }
        let asked = Instant::now();
        app.kubectl(&[
            "annotate",
            "lease",
            &app.election,
            "understudy.io/handover-to=",
            "--overwrite",
        ])
        .await
        .unwrap();
        let new = app
            .wait_leader(Some(&old), Duration::from_secs(15))
            .await
            .unwrap();
        let settled = Instant::now();
        while let Some(run) = rx.recv().await {
            runs.push(run);
        }
        load.await.unwrap();

        let (before, after) = pgbench::check_runs(&runs, asked, settled);
        let history = |pod: String| {
            let app = &app;
            async move {
                let out = app
                    .run_in_pod(&pod, "psql", &[LOCAL, "-Atc", History::SQL])
                    .await
                    .unwrap_or_else(|e| panic!("{name}: reading {pod}'s pgbench_history: {e}"));
                History::parse(&out)
            }
        };
        let (h_old, h_new) = (history(old.clone()).await, history(new.clone()).await);
        History::assert_before(h_old, h_new);
        let failed: usize = runs.iter().map(|r| r.failed.len()).sum();
        println!(
            "scenario={name} runs={} transactions={} before={before} after={after} \
             failures_at_handover={failed} on_old={} on_new={} handover_ms={}",
            runs.len(),
            runs.iter().map(|r| r.processed).sum::<u64>(),
            h_old.count,
            h_new.count,
            settled.duration_since(asked).as_millis()
        );
        drop(app);
        s.cluster.shutdown().await.unwrap();
    })
    .await;
}
