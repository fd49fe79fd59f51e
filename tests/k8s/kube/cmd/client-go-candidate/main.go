// Command client-go-candidate is a foreign peer for understudy's tests: a leader-election
// candidate written the way Kubernetes components write one, with client-go's
// tools/leaderelection and a resourcelock.LeaseLock, contending for the same Lease as the
// understudy sidecars.
//
// It also serves a tiny HTTP app that names itself and logs, in the format of the test
// apps' access logs (tab-separated: time, request time, status, leader, epoch, lease,
// request line), every request it answers and every start and stop of its leadership, so
// the overlap checker reads its tenures like any app's. It acts as leader from
// OnStartedLeading until that callback's context ends, which client-go ends before it
// writes the release.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// tenure is what the app knows of its own leadership.
type tenure struct {
	mu      sync.Mutex
	leading bool
	epoch   int
}

func (t *tenure) get() (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leading, t.epoch
}

func (t *tenure) set(leading bool, epoch int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leading, t.epoch = leading, epoch
}

// accessLog writes lines the overlap checker reads.
type accessLog struct {
	mu    sync.Mutex
	f     *os.File
	id    string
	lease string
}

func (a *accessLog) write(start time.Time, status int, epoch string, line string) {
	if a.f == nil {
		return
	}
	now := time.Now()
	msec := float64(now.UnixMilli()) / 1000
	took := now.Sub(start).Seconds()
	// nginx writes "-" for an absent header; the overlap checker reads it as "none".
	leader := a.id
	if epoch == "" {
		leader, epoch = "-", "-"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.f, "%.3f\t%.3f\t%d\t%s\t%s\t%s\t%s\n", msec, took, status, leader, epoch, a.lease, line)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (empty: in-cluster configuration)")
	namespace := flag.String("namespace", "default", "namespace of the Lease")
	leaseName := flag.String("lease", "", "name of the Lease (required)")
	id := flag.String("id", "", "identity written as holderIdentity (default: hostname)")
	leaseDuration := flag.Duration("lease-duration", 15*time.Second, "LeaseDuration")
	renewDeadline := flag.Duration("renew-deadline", 10*time.Second, "RenewDeadline")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "RetryPeriod")
	listen := flag.String("listen", "", "address of the HTTP app (empty: none)")
	accessLogPath := flag.String("access-log", "", "file the app logs requests and leadership changes to")
	flag.Parse()

	if *leaseName == "" {
		log.Fatal("client-go-candidate: --lease is required")
	}
	if *id == "" {
		host, err := os.Hostname()
		if err != nil {
			log.Fatalf("client-go-candidate: hostname: %v", err)
		}
		*id = host
	}

	var cfg *rest.Config
	var err error
	if *kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		log.Fatalf("client-go-candidate: kube config: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("client-go-candidate: client: %v", err)
	}

	alog := &accessLog{id: *id, lease: *leaseName}
	if *accessLogPath != "" {
		alog.f, err = os.OpenFile(*accessLogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			log.Fatalf("client-go-candidate: access log: %v", err)
		}
	}

	state := &tenure{}
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Fatalf("client-go-candidate: listen %s: %v", *listen, err)
		}
		go serve(ln, *id, state, alog)
	}

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: *namespace, Name: *leaseName},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: *id},
	}

	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		log.Printf("%s received %s: releasing", stamp(), sig)
		cancel()
	}()

	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		ReleaseOnCancel: true,
		Name:            *leaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				epoch := -1
				getCtx, done := context.WithTimeout(leadCtx, *retryPeriod)
				if rec, _, err := lock.Get(getCtx); err == nil {
					epoch = rec.LeaderTransitions
				}
				done()
				start := time.Now()
				state.set(true, epoch)
				log.Printf("%s started leading %s/%s as %s, epoch %d", stamp(), *namespace, *leaseName, *id, epoch)
				alog.write(start, 200, strconv.Itoa(epoch), "LEAD start")
				<-leadCtx.Done()
				stop := time.Now()
				alog.write(stop, 200, strconv.Itoa(epoch), "LEAD stop")
				state.set(false, epoch)
				log.Printf("%s stopped acting as leader of %s/%s", stamp(), *namespace, *leaseName)
			},
			OnStoppedLeading: func() {
				log.Printf("%s stopped leading %s/%s", stamp(), *namespace, *leaseName)
			},
			OnNewLeader: func(identity string) {
				log.Printf("%s new leader of %s/%s: %s", stamp(), *namespace, *leaseName, identity)
			},
		},
	})
	log.Printf("%s exiting", stamp())
}

// serve answers every request with the candidate's name: 200 while it leads (and logs the
// request with its fencing token), 503 otherwise.
func serve(ln net.Listener, id string, state *tenure, alog *accessLog) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		leading, epoch := state.get()
		line := r.Method + " " + r.URL.RequestURI()
		if !leading {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "client-go %s: not leading\n", id)
			alog.write(start, http.StatusServiceUnavailable, "", line)
			return
		}
		fmt.Fprintf(w, "client-go %s\n", id)
		alog.write(start, http.StatusOK, strconv.Itoa(epoch), line)
	})
	if err := http.Serve(ln, handler); err != nil {
		log.Fatalf("client-go-candidate: serve: %v", err)
	}
}

func stamp() string {
	return time.Now().UTC().Format(time.RFC3339Nano)
}
