package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dktscore/dktscore/scoring"
)

const scoreIntro = `Usage: dktscore score --model M --input F --output O [flags]

Scores every student in F and writes mastery after their latest interaction to O.
`

func scoreCmd(args []string, stdout, stderr io.Writer) int {
	var o scoring.Options
	set := scoring.Settings(&o, "dktscore score")
	res, err := set.Resolve(args, nil)
	if res.Help {
		set.WriteUsage(stdout, scoreIntro)
		return 0
	}
	if err == nil && (o.Input == "" || o.Output == "") {
		err = fmt.Errorf("--input and --output are required")
	}
	if err == nil {
		// Before the model loads: a run must not destroy what is at an output path.
		err = scoring.CheckPaths(o)
	}
	if err != nil {
		writeProblems(stderr, "dktscore score", err, nil)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile, err := startCPUProfile(o.CPUProfile)
	if err != nil {
		fmt.Fprintf(stderr, "dktscore score: %v\n", err)
		return 2
	}
	defer stopProfile()
	done := make(chan error, 1)
	go func() { done <- scoring.Run(ctx, o, stdout, stderr) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// After the first signal a second one kills at once (Go's default
		// action), and the run gets --shutdown-timeout to stop by itself.
		stop()
		fmt.Fprintf(stderr, "dktscore score: stopping (signal received; a second one exits at once)\n")
		select {
		case err = <-done:
		case <-time.After(o.ShutdownTimeout):
			err = fmt.Errorf("interrupted, and the run did not stop within --shutdown-timeout %v: exiting anyway; no output was replaced (temporary .partial files may be left beside --output %s)", o.ShutdownTimeout, o.Output)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "dktscore score: %v\n", err)
		return 1
	}
	return 0
}
