package serving

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// process is everything one serving process runs, handed to run.
type process struct {
	httpAddr string
	handler  http.Handler // /healthz, /readyz, /metrics
	// pipeline consumes, scores and commits until its context ends, then
	// finishes its work in hand and returns.
	pipeline func(context.Context) error
	// background tasks (the model watcher, the state evictor) run until
	// their context ends.
	background []func(context.Context)
	// closers release the Kafka clients; each is called once, after the
	// pipeline has returned or its drain time is up.
	closers         []func(context.Context) error
	shutdownTimeout time.Duration
	overdue         string // says what is lost when draining takes longer than shutdownTimeout, with %v for it
}

// run owns every goroutine of a serving process: the HTTP server, the
// pipeline and the background tasks run in one group, and run returns only
// when all of them have stopped.
//
// Event order. The HTTP listener is bound first, so a taken port fails
// before any input is read. Then the group starts; stop (a context below
// ctx) ends it. stop is cancelled when ctx ends (SIGTERM), when the pipeline
// returns, or when the HTTP server fails — so any one of them stops all.
// After ctx ends the pipeline has shutdownTimeout to drain; if it takes
// longer, the Kafka clients are closed under it (its reads and writes fail,
// so it returns; its uncommitted input is redelivered after a restart) and
// run reports the overrun. The Kafka clients are closed in every case, and
// the HTTP server is shut down last, so /metrics shows the drain.
func run(ctx context.Context, w process) error {
	listener, err := net.Listen("tcp", w.httpAddr)
	if err != nil {
		return fmt.Errorf("http server on %s: %w", w.httpAddr, err)
	}
	server := &http.Server{Handler: w.handler, ReadHeaderTimeout: 5 * time.Second}

	var closeOnce sync.Once
	var closeErr error
	closeKafka := func() {
		closeOnce.Do(func() {
			shutdown, cancel := context.WithTimeout(context.Background(), w.shutdownTimeout)
			defer cancel()
			for _, c := range w.closers {
				closeErr = errors.Join(closeErr, c(shutdown))
			}
		})
	}

	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	pipelineDone := make(chan struct{})
	var overrun error
	g := new(errgroup.Group)
	g.Go(func() error {
		defer cancel()
		if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server on %s: %w", w.httpAddr, err)
		}
		return nil
	})
	g.Go(func() error {
		defer close(pipelineDone)
		defer cancel()
		err := w.pipeline(stop)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	for _, task := range w.background {
		g.Go(func() error { task(stop); return nil })
	}
	g.Go(func() error {
		<-stop.Done()
		select {
		case <-pipelineDone:
		case <-time.After(w.shutdownTimeout):
			overrun = fmt.Errorf(w.overdue, w.shutdownTimeout)
		}
		closeKafka()
		<-pipelineDone
		shutdown, cancelShutdown := context.WithTimeout(context.Background(), w.shutdownTimeout)
		defer cancelShutdown()
		return server.Shutdown(shutdown)
	})
	err = g.Wait()
	closeKafka() // no-op unless the group ended without the watcher above closing
	return errors.Join(overrun, err, closeErr)
}
