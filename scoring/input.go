package scoring

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/worker"
)

// countingReader counts the bytes the decoder has consumed, for the progress bar.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Input is a decoder plus, for text formats, how far into the file it is.
type Input struct {
	records.Reader
	file     *os.File
	owned    bool   // file is ours to close (not os.Stdin itself)
	restore  func() // undoes what opening did to stdin; nil when nothing
	size     int64
	consumed *countingReader // nil for Parquet, which is read by row group
	closed   sync.Once
}

// Close closes the decoder and the file.
func (in *Input) Close() error {
	err := in.Reader.Close()
	in.closeFile()
	return err
}

// closeFile closes the file once; a read blocked on it (a pipe nobody
// writes to) returns at once. Safe to call from another goroutine.
func (in *Input) closeFile() {
	in.closed.Do(func() {
		if in.owned {
			in.file.Close()
		}
		if in.restore != nil {
			in.restore()
		}
	})
}

// stdinName is how stdin (--input -) is named in messages and rejects.
const stdinName = "stdin"

// OpenInput opens the records at path in the format named by formatFlag
// (--input-format), or the one detected from the file when it is empty;
// path "-" is stdin.
func OpenInput(path, formatFlag string, numSkills int) (*Input, error) {
	return openInput(context.Background(), path, formatFlag, numSkills)
}

// openInput is OpenInput that gives up when ctx ends: opening a named pipe
// waits for a writer, and sniffing its format waits for its first line.
func openInput(ctx context.Context, path, formatFlag string, numSkills int) (*Input, error) {
	var format records.Format
	if formatFlag != "" {
		var err error
		if format, err = records.ParseFormat(formatFlag); err != nil {
			return nil, err
		}
	}
	type result struct {
		in  *Input
		err error
	}
	done := make(chan result, 1)
	var (
		mu        sync.Mutex
		opened    *Input
		cancelled bool
	)
	go func() {
		in, err := openFile(path)
		if err != nil {
			done <- result{err: err}
			return
		}
		mu.Lock()
		opened = in
		stop := cancelled
		mu.Unlock()
		if stop {
			in.closeFile()
			done <- result{err: ctx.Err()}
			return
		}
		in.consumed = &countingReader{r: in.file}
		name := path
		if path == "-" {
			name = stdinName
		}
		in.Reader, err = records.NewFileReader(in.file, in.consumed, name, format, records.Options{NumSkills: numSkills})
		if err != nil {
			in.closeFile()
			done <- result{err: err}
			return
		}
		done <- result{in: in}
	}()
	select {
	case r := <-done:
		return r.in, r.err
	case <-ctx.Done():
	}
	mu.Lock()
	cancelled = true
	in := opened
	mu.Unlock()
	if in != nil {
		in.closeFile() // a sniff waiting for the first line returns
	} else {
		unblockFIFOOpen(path)
	}
	// The opener returns promptly now; should it not, the process is
	// exiting anyway and must not wait for it.
	select {
	case r := <-done:
		if r.in != nil {
			r.in.Close()
		}
	case <-time.After(time.Second):
	}
	return nil, fmt.Errorf("interrupted while opening --input %s (a named pipe or stdin waits for its writer)", path)
}

// openFile opens path, or stdin for "-", and reads its size.
func openFile(path string) (*Input, error) {
	if path == "-" {
		return openStdin(), nil
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open --input %s: %w", path, pathErrCause(err))
	}
	in := &Input{file: file, owned: true}
	if st, err := file.Stat(); err == nil && st.Mode().IsRegular() {
		in.size = st.Size()
	}
	return in, nil
}

// openStdin reads stdin. A pipe is read through a non-blocking duplicate
// descriptor, which Go's poller serves, so that closing it interrupts a read
// that waits for a silent writer; blocking mode is restored on close, since
// the pipe's other users (the shell) expect it. A terminal or a redirected
// file is read as it is.
func openStdin() *Input {
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeNamedPipe != 0 {
		if fd, err := syscall.Dup(0); err == nil {
			if syscall.SetNonblock(fd, true) == nil {
				return &Input{file: os.NewFile(uintptr(fd), stdinName), owned: true,
					restore: func() { syscall.SetNonblock(0, false) }}
			}
			syscall.Close(fd)
		}
	}
	in := &Input{file: os.Stdin}
	if st, err := os.Stdin.Stat(); err == nil && st.Mode().IsRegular() {
		in.size = st.Size()
	}
	return in
}

// unblockFIFOOpen ends an open of the named pipe at path that waits for a
// writer, by briefly being that writer: the reader then sees an empty input.
func unblockFIFOOpen(path string) {
	if st, err := os.Stat(path); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
}

type progressBar struct {
	done chan struct{}
	wg   sync.WaitGroup
}

// startProgress redraws a bar on stderr while a terminal is watching; it stays
// silent when stderr is a file or pipe (CI logs, redirects).
func startProgress(w io.Writer, enabled bool, in *Input, p *worker.Progress) *progressBar {
	bar := &progressBar{done: make(chan struct{})}
	file, ok := w.(*os.File)
	if !enabled || !ok || !isTerminal(file) {
		return bar
	}
	started := time.Now()
	draw := func() {
		line := fmt.Sprintf("%d students, %d interactions, %d rejected, %.0fs",
			p.Students.Load(), p.Interactions.Load(), p.Rejected.Load(), time.Since(started).Seconds())
		if n := in.consumed; n != nil && in.size > 0 && n.n.Load() > 0 { // Parquet is not read through it
			frac := min(float64(in.consumed.n.Load())/float64(in.size), 1)
			filled := int(frac * 30)
			line = fmt.Sprintf("[%s%s] %3.0f%% read  %s", strings.Repeat("#", filled), strings.Repeat(".", 30-filled), frac*100, line)
		}
		fmt.Fprintf(w, "\r%s\x1b[K", line)
	}
	bar.wg.Add(1)
	go func() {
		defer bar.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-bar.done:
				draw()
				fmt.Fprintln(w)
				return
			case <-tick.C:
				draw()
			}
		}
	}()
	return bar
}

func (b *progressBar) stop() {
	close(b.done)
	b.wg.Wait()
}

func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
