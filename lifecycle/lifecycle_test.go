package lifecycle

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// events records what happened, in order, from several goroutines.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) { e.mu.Lock(); e.list = append(e.list, s); e.mu.Unlock() }
func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.list, ",")
}

func frontend(ev *events, name string) Frontend {
	stopped := make(chan struct{})
	return Frontend{Name: name, Addr: "127.0.0.1:0",
		Serve: func(l net.Listener) error { <-stopped; l.Close(); return nil },
		Stop:  func(context.Context) { ev.add(name + " stopped"); close(stopped) },
	}
}

func process(ev *events, pipeline func(context.Context) error) Process {
	return Process{HTTPAddr: "127.0.0.1:0", Handler: http.NotFoundHandler(),
		Frontends:       []Frontend{frontend(ev, "grpc")},
		Pipeline:        pipeline,
		Closers:         []func(context.Context) error{func(context.Context) error { ev.add("kafka closed"); return nil }},
		ShutdownTimeout: time.Second, Overdue: "drain took longer than %v",
	}
}

func TestStopsFrontDoorsThenDrainsThenCloses(t *testing.T) {
	ev := &events{}
	ctx, sigterm := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, process(ev, func(ctx context.Context) error {
			<-ctx.Done()
			ev.add("pipeline drained")
			return ctx.Err()
		}))
	}()
	time.Sleep(50 * time.Millisecond)
	sigterm()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if got, want := ev.String(), "grpc stopped,pipeline drained,kafka closed"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestADrainOverrunStillClosesTheClients(t *testing.T) {
	ev := &events{}
	ctx, sigterm := context.WithCancel(context.Background())
	release := make(chan struct{})
	p := process(ev, func(ctx context.Context) error {
		<-ctx.Done()
		<-release // stuck until the clients are closed under it
		ev.add("pipeline returned")
		return nil
	})
	p.ShutdownTimeout = 100 * time.Millisecond
	p.Closers = []func(context.Context) error{func(context.Context) error { ev.add("kafka closed"); close(release); return nil }}
	sigterm()
	err := Run(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "drain took longer than 100ms") {
		t.Fatalf("err %v, want the overrun", err)
	}
	if got, want := ev.String(), "grpc stopped,kafka closed,pipeline returned"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestAFailingPipelineStopsEverything(t *testing.T) {
	ev := &events{}
	boom := errors.New("boom")
	err := Run(context.Background(), process(ev, func(context.Context) error { return boom }))
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want the pipeline's", err)
	}
	if got, want := ev.String(), "grpc stopped,kafka closed"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestATakenPortFailsBeforeAnythingRuns(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ev := &events{}
	p := process(ev, func(context.Context) error { ev.add("pipeline ran"); return nil })
	p.Frontends[0].Addr = taken.Addr().String()
	err = Run(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "grpc server on "+taken.Addr().String()) {
		t.Fatalf("err %v, want the taken port named", err)
	}
	if ev.String() != "" {
		t.Fatalf("%q happened before the port was refused", ev.String())
	}
}
