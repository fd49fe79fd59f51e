module understudy.test/k8s/crds

go 1.26.0

// The Prometheus Operator CRDs (PodMonitor, PrometheusRule) as published with its
// v0.85.0 release, in example/prometheus-operator-crd/: tests/k8s/build copies them to
// target/k8s/crds/ for the tests that apply deploy/components/monitoring.
require github.com/prometheus-operator/prometheus-operator v0.85.0
