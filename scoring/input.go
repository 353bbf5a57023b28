package scoring

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
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
	size     int64
	consumed *countingReader // nil for Parquet, which is read by row group
}

// Close closes the decoder and the file.
func (in *Input) Close() error {
	err := in.Reader.Close()
	if in.file != nil {
		in.file.Close()
	}
	return err
}

// OpenInput opens the records at path in the format named by formatFlag
// (--input-format), or the one detected from the file when it is empty.
func OpenInput(path, formatFlag string, numSkills int) (*Input, error) {
	var format records.Format
	var err error
	if formatFlag != "" {
		format, err = records.ParseFormat(formatFlag)
	} else {
		format, err = records.DetectFormat(path)
	}
	if err != nil {
		return nil, err
	}
	opts := records.Options{NumSkills: numSkills}
	if format == records.FormatParquet {
		r, err := records.Open(path, format, opts)
		if err != nil {
			return nil, err
		}
		return &Input{Reader: r}, nil
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot open the input: %w", path, err)
	}
	stat, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	counter := &countingReader{r: file}
	r, err := records.NewReader(counter, path, format, opts)
	if err != nil {
		file.Close()
		return nil, err
	}
	return &Input{Reader: r, file: file, size: stat.Size(), consumed: counter}, nil
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
		if in.consumed != nil && in.size > 0 {
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
