// Package lifecycle runs a server process's parts — its front doors, the
// pipeline behind them, background tasks and the operations endpoint —
// under one owner: they start together, any one of them ending stops all,
// each stage of stopping has a deadline, and every client is closed however
// the process stops.
package lifecycle

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Process is everything one server process runs, handed to Run.
type Process struct {
	// HTTPAddr and Handler are the operations endpoint (/healthz, /readyz,
	// /metrics). It is stopped last, so /metrics shows the drain.
	HTTPAddr string
	Handler  http.Handler
	// Frontends take requests that the pipeline answers (the TF Serving
	// API). They stop taking new requests first, and finish the ones in
	// flight while the pipeline still runs.
	Frontends []Frontend
	// Pipeline consumes, scores and delivers until its context ends, then
	// finishes its work in hand and returns.
	Pipeline func(context.Context) error
	// Background tasks (the model watcher, the state evictor) run until
	// their context ends.
	Background []func(context.Context)
	// Closers release the Kafka clients; each is called once, after the
	// pipeline has returned or its drain time is up.
	Closers         []func(context.Context) error
	ShutdownTimeout time.Duration
	Overdue         string // says what is lost when draining takes longer than ShutdownTimeout, with %v for it
}

// Frontend is a network server in front of the pipeline.
type Frontend struct {
	Name string // for errors: "gRPC", "REST"
	Addr string
	// Serve serves on l until Stop; any error it returns stops the process.
	Serve func(l net.Listener) error
	// Stop stops taking requests and waits, bounded by ctx, for the ones in
	// flight; after Stop, Serve returns nil.
	Stop func(ctx context.Context)
}

// HTTPFrontend serves h as a Frontend: over HTTPS with tlsConfig's
// certificate (and client verification), or plain HTTP when it is nil.
func HTTPFrontend(name, addr string, h http.Handler, tlsConfig *tls.Config) Frontend {
	server := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	serve := server.Serve
	if tlsConfig != nil {
		// A clone: ServeTLS adds HTTP's ALPN protocols to the config it is given.
		server.TLSConfig = tlsConfig.Clone()
		serve = func(l net.Listener) error { return server.ServeTLS(l, "", "") }
	}
	return Frontend{Name: name, Addr: addr,
		Serve: func(l net.Listener) error {
			if err := serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		Stop: func(ctx context.Context) {
			if server.Shutdown(ctx) != nil {
				server.Close() // past the deadline: cut what is left
			}
		},
	}
}

// Run owns every goroutine of a server process: the front doors, the
// operations endpoint, the pipeline and the background tasks run in one
// group, and Run returns only when all of them have stopped, with every
// error any of them met.
//
// Event order. Every listener is bound first, so a taken port fails before
// any input is read. Then the group starts; stop (a context below ctx) ends
// it. stop is cancelled when ctx ends (SIGTERM), when the pipeline returns,
// or when a server fails — so any one of them stops all. Stopping then goes
// in stages, each bounded by ShutdownTimeout: the front doors stop taking
// requests and answer the ones in flight (the pipeline still runs for
// them); the pipeline's context ends and it drains; if the drain overruns,
// the Kafka clients are closed under it (its reads and writes fail, so it
// returns; its uncommitted input is redelivered after a restart) and Run
// reports the overrun. The Kafka clients are closed in every case, and the
// operations endpoint is shut down last. Run then still waits for the
// pipeline to return: with its clients closed it returns promptly, unless a
// model run is in progress, which TensorFlow cannot interrupt.
func Run(ctx context.Context, p Process) error {
	ops := HTTPFrontend("HTTP", p.HTTPAddr, p.Handler, nil)
	all := append([]Frontend{ops}, p.Frontends...)
	listeners := make([]net.Listener, len(all))
	for i, f := range all {
		l, err := net.Listen("tcp", f.Addr)
		if err != nil {
			for _, bound := range listeners[:i] {
				bound.Close()
			}
			return fmt.Errorf("%s server on %s: %w", f.Name, f.Addr, err)
		}
		listeners[i] = l
	}

	var closeOnce sync.Once
	var closeErr error
	closeClients := func() {
		closeOnce.Do(func() {
			bounded, cancel := context.WithTimeout(context.Background(), p.ShutdownTimeout)
			defer cancel()
			for _, c := range p.Closers {
				closeErr = errors.Join(closeErr, c(bounded))
			}
		})
	}
	within := func(f func(context.Context)) {
		bounded, cancel := context.WithTimeout(context.Background(), p.ShutdownTimeout)
		defer cancel()
		f(bounded)
	}

	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	// The pipeline's own context outlives stop until the front doors have
	// answered what they took in.
	drain, startDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer startDrain()
	pipelineDone := make(chan struct{})
	var overrun error
	var errsMu sync.Mutex
	var errs []error // every part's error, not only the first
	var g sync.WaitGroup
	keep := func(err error) {
		if err != nil {
			errsMu.Lock()
			errs = append(errs, err)
			errsMu.Unlock()
		}
	}
	for i, f := range all {
		g.Go(func() {
			defer cancel()
			if err := f.Serve(listeners[i]); err != nil {
				keep(fmt.Errorf("%s server on %s: %w", f.Name, f.Addr, err))
			}
		})
	}
	g.Go(func() {
		defer close(pipelineDone)
		defer cancel()
		if err := p.Pipeline(drain); !errors.Is(err, context.Canceled) {
			keep(err)
		}
	})
	for _, task := range p.Background {
		g.Go(func() { task(stop) })
	}
	g.Go(func() {
		<-stop.Done()
		var frontends sync.WaitGroup
		for _, f := range p.Frontends {
			frontends.Go(func() { within(f.Stop) })
		}
		frontends.Wait()
		startDrain()
		select {
		case <-pipelineDone:
		case <-time.After(p.ShutdownTimeout):
			overrun = fmt.Errorf(p.Overdue, p.ShutdownTimeout)
		}
		closeClients()
		<-pipelineDone
		within(ops.Stop)
	})
	g.Wait()
	closeClients() // no-op unless the group ended without the stopper above closing
	return errors.Join(append([]error{overrun}, append(errs, closeErr)...)...)
}
