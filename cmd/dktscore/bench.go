package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dktscore/dktscore/bench"
	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/engine"
	"github.com/dktscore/dktscore/scoring"
)

const benchIntro = `Usage: dktscore bench [--model M] [--input F] [--rows a,o,f,g,m] [flags]

Times model.Predict alone over pre-built batches of F (default ` + bench.DefaultInput + `; no I/O, no decoding).
Rows: a (engine ceiling, length buckets), o (row a on the origin predict signature),
f (naive batching: file order, pad to longest), k (the chunk path: blocks of --batch-size rows ×
--chunk-steps steps with carried state, what score runs), p (the chunk path's peak: full random blocks), g (event mode: carried state vs re-scoring),
m (load generator for a running model-server or TF Serving at --target: closed-loop
clients, one student per Predict request as the origin's client sent it; no model is loaded).
score's output flags (--output, --trajectory, --emit-state, --quiet, --cpuprofile) are ignored.
The full side-by-side benchmark (score, serve, Python baselines) is ` + "`make bench`" + ` (bench/run.py).
`

func benchCmd(args []string, stdout, stderr io.Writer) int {
	var o scoring.Options
	var rows string
	var runs, warmup, chunkSteps int
	var asJSON bool
	var events bench.EventFlags
	var frontDoor bench.FrontDoorFlags
	set := scoring.Settings(&o, "dktscore bench")
	config.String(set, &rows, config.Spec{Flag: "rows", Default: "a,o,f", Help: "rows to measure, comma-separated: a, o, f, k, p, g, m"})
	config.Int(set, &runs, config.Spec{Flag: "runs", Default: "3", Help: "timed passes per row; the median is reported"}).Check(config.AtLeast(1))
	config.Int(set, &warmup, config.Spec{Flag: "warmup", Default: "1", Help: "untimed passes per row before the timed ones"}).Check(config.NotNegative[int])
	config.Int(set, &chunkSteps, config.Spec{Flag: "chunk-steps", Default: fmt.Sprint(engine.ChunkSteps),
		Help: "steps per chunk of rows k and p (score uses the default)"}).Check(config.AtLeast(1))
	config.Bool(set, &asJSON, config.Spec{Flag: "json", Help: "print one JSON object per row"})
	events.Declare(set)
	frontDoor.Declare(set)
	res, err := set.Resolve(args, nil)
	if res.Help {
		set.WriteUsage(stdout, benchIntro)
		return 0
	}
	var engineRows []string
	wantEvents, wantFrontDoor := false, false
	var badRows []error
	for _, r := range strings.Split(rows, ",") {
		switch r = strings.TrimSpace(r); r {
		case "g":
			wantEvents = true
		case "m":
			wantFrontDoor = true
		case "a", "o", "f", "k", "p":
			engineRows = append(engineRows, r)
		default:
			badRows = append(badRows, fmt.Errorf("--rows: %q is not a, o, f, k, p, g or m", r))
		}
	}
	if err = errors.Join(append([]error{err}, badRows...)...); err != nil {
		writeProblems(stderr, "dktscore bench", err, nil)
		return 2
	}
	if o.Input == "" {
		o.Input = bench.DefaultInput
	}
	if wantFrontDoor {
		if err := bench.FrontDoor(context.Background(), o.Input, &frontDoor, asJSON, stdout); err != nil {
			fmt.Fprintf(stderr, "dktscore bench: %v\n", err)
			return 1
		}
	}
	if wantEvents {
		if err := bench.Events(o, &events, runs, warmup, asJSON, stdout); err != nil {
			fmt.Fprintf(stderr, "dktscore bench: %v\n", err)
			return 1
		}
	}
	if len(engineRows) > 0 {
		if err := bench.Engine(o, engineRows, chunkSteps, runs, warmup, asJSON, stdout); err != nil {
			fmt.Fprintf(stderr, "dktscore bench: %v\n", err)
			return 1
		}
	}
	return 0
}
