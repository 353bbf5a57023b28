package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	apis "github.com/wamuir/graft/tensorflow/serving/apis_go_proto"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/scoring"
)

// `dktscore bench --rows m`: a closed-loop load generator for the TF Serving
// front door — dktscore model-server, or tensorflow_model_server itself,
// since only the public API is used. Each of --clients goroutines sends one
// Predict request at a time and the next as soon as the answer arrives, as
// the origin's client did: one student per request (B = 1) on the one-hot
// "predict" signature, tensors as tensor_content bytes (what
// tf.make_tensor_proto builds from numpy arrays). Students are taken
// round-robin over the input, each client starting at a different offset, so
// every client sends the whole length mix. Requests are built once, before
// any is timed.
//
// T is the student's own length. The origin's DataGenerator padded every
// sequence to the longest in its data set; --pad-to N sends max(own length, N)
// steps instead, at the cost of holding every request padded in memory
// (students × N × 2·num_skills × 4 bytes).
//
// Event order of a point: all clients start; the first --warmup-time is not
// recorded; then for --duration every request that completes inside the
// window is recorded (requests/s counts them over the window), also one
// that started during the warm-up, under the same load: counting only the
// requests that also start inside would leave out the slow ones that start
// near its end, and undercount both throughput and the latency tail. When
// the window ends, the requests in flight are cancelled and not counted. A complete answer is pred_all with T·num_skills values; anything
// else is an error, by gRPC code (INCOMPLETE for a short answer).

// FrontDoorFlags are the front-door benchmark's own flags.
type FrontDoorFlags struct {
	target   string
	model    string
	clients  []string
	duration time.Duration
	warmup   time.Duration
	timeout  time.Duration
	padTo    int
	metrics  string
}

// Declare declares the front-door benchmark's flags, bound to f.
func (f *FrontDoorFlags) Declare(set *config.Set) {
	config.String(set, &f.target, config.Spec{Flag: "target", Default: "127.0.0.1:8500",
		Help: "--rows m: gRPC host:port of the TF Serving API (dktscore model-server or tensorflow_model_server)"})
	config.String(set, &f.model, config.Spec{Flag: "model-name", Default: "builder",
		Help: "--rows m: model_spec.name of the requests (the server's --model_name)"})
	config.List(set, &f.clients, config.Spec{Flag: "clients", Default: "1,8,64,256",
		Help: "--rows m: concurrent clients, one row each; each has one request in flight at a time"}).Check(func(v []string) error {
		_, err := parseClients(v)
		return err
	})
	config.Duration(set, &f.duration, config.Spec{Flag: "duration", Default: "10s",
		Help: "--rows m: recorded time per row"}).Check(config.Positive[time.Duration])
	config.Duration(set, &f.warmup, config.Spec{Flag: "warmup-time", Default: "2s",
		Help: "--rows m: time each row runs before recording (the server's queue and batches settle)"}).Check(config.NotNegative[time.Duration])
	config.Duration(set, &f.timeout, config.Spec{Flag: "timeout", Default: "30s",
		Help: "--rows m: deadline of each request (an expired one counts as DEADLINE_EXCEEDED)"}).Check(config.Positive[time.Duration])
	config.Int(set, &f.padTo, config.Spec{Flag: "pad-to", Default: "0",
		Help: "--rows m: send max(own length, N) steps per student, as the origin's client padded to the data set's longest; 0 = own length"}).Check(config.NotNegative[int])
	config.String(set, &f.metrics, config.Spec{Flag: "metrics",
		Help: "--rows m: the server's Prometheus URL (http://OPS/metrics); each row then reports the batches the server formed in its window"})
}

func parseClients(list []string) ([]int, error) {
	if len(list) == 0 {
		return nil, errors.New("is empty; give concurrencies like 1,8,64")
	}
	var out []int
	for _, s := range list {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("has %q; each entry must be a number of clients ≥ 1", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// frontDoorRow is one measured concurrency of `dktscore bench --rows m`,
// printed as one JSON line with --json (bench/run.py reads these).
type frontDoorRow struct {
	Row          string  `json:"row"` // "m"
	Target       string  `json:"target"`
	Clients      int     `json:"clients"`
	Students     int     `json:"students"`
	PadTo        int     `json:"pad_to"`
	Seconds      float64 `json:"duration_s"`
	Requests     int     `json:"requests"`     // complete answers recorded
	Interactions int     `json:"interactions"` // their real steps
	ReqPerSec    float64 `json:"requests_per_s"`
	IntPerSec    float64 `json:"interactions_per_s"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MeanMs       float64 `json:"mean_ms"`
	// Errors are the failed requests of the window by gRPC code
	// (INCOMPLETE: an answer without T·num_skills values); ResourceExhausted
	// repeats that code's count, the server's "queue full".
	Errors            map[string]int `json:"errors"`
	ResourceExhausted int            `json:"resource_exhausted"`
	// ClientCPU is this load generator's CPU time over the window: on a
	// machine it shares with the server, what the clients took from it.
	ClientCPU float64       `json:"client_cpu_s"`
	Server    *serverWindow `json:"server,omitempty"` // with --metrics
}

// FrontDoor runs the front-door benchmark: one row per entry of --clients,
// against the server at --target.
func FrontDoor(ctx context.Context, input string, f *FrontDoorFlags, asJSON bool, stdout io.Writer) error {
	clients, err := parseClients(f.clients)
	if err != nil {
		return fmt.Errorf("--clients %w", err)
	}
	// Long students' requests and answers run to megabytes (8,214 steps:
	// 8 MB of input_x, 4 MB of pred_all); gRPC's 4 MB default would refuse them.
	conn, err := grpc.NewClient(f.target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
	if err != nil {
		return fmt.Errorf("--target %s: %w", f.target, err)
	}
	defer conn.Close()
	numSkills, err := askNumSkills(ctx, conn, f.model, f.timeout)
	if err != nil {
		return err
	}
	seqs, err := ReadAll(scoring.Options{Input: input}, numSkills)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		return fmt.Errorf("%s: no valid sequences", input)
	}
	reqs := make([]request, len(seqs))
	for i, s := range seqs {
		reqs[i] = newRequest(f.model, numSkills, s, f.padTo)
	}
	for _, n := range clients {
		res, err := runPoint(ctx, conn, reqs, n, f)
		if err != nil {
			return err
		}
		res.Target, res.Students, res.PadTo = f.target, len(seqs), f.padTo
		if asJSON {
			line, _ := json.Marshal(res)
			fmt.Fprintf(stdout, "%s\n", line)
			continue
		}
		fmt.Fprintf(stdout, "m %4d clients  %8.1f requests/s  %9.0f interactions/s  p50 %7.1f ms  p99 %7.1f ms  errors %v",
			res.Clients, res.ReqPerSec, res.IntPerSec, res.P50Ms, res.P99Ms, res.Errors)
		if w := res.Server; w != nil {
			fmt.Fprintf(stdout, "  server: %d batches, mean size %.1f, flushes %v", w.Batches, w.MeanBatchSize, w.Flushes)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// request is one student's Predict request and what its answer must hold.
type request struct {
	msg    *apis.PredictRequest
	values int // T·num_skills: pred_all [1, T, num_skills] of a complete answer
	real   int // the student's interactions
}

// clientLog is what one client recorded in the window.
type clientLog struct {
	latencies    []time.Duration
	interactions int
	errors       map[string]int
}

// runPoint runs clients closed-loop clients for f.warmup + f.duration and
// summarises the recorded window.
func runPoint(ctx context.Context, conn *grpc.ClientConn, reqs []request, clients int, f *FrontDoorFlags) (frontDoorRow, error) {
	from := time.Now().Add(f.warmup)
	to := from.Add(f.duration)
	runCtx, cancel := context.WithDeadline(ctx, to)
	defer cancel()
	logs := make([]clientLog, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			logs[c] = runClient(runCtx, conn, reqs, c*len(reqs)/clients, f.timeout, from, to)
		}()
	}
	var before, after metricSample
	var scrapeErr error
	sleepUntil(ctx, from)
	cpuFrom := cpuSeconds()
	if f.metrics != "" {
		before, scrapeErr = scrape(ctx, f.metrics)
	}
	sleepUntil(ctx, to)
	cpuTo := cpuSeconds()
	if f.metrics != "" && scrapeErr == nil {
		after, scrapeErr = scrape(ctx, f.metrics)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return frontDoorRow{}, err
	}
	if scrapeErr != nil {
		return frontDoorRow{}, fmt.Errorf("--metrics %s: %w", f.metrics, scrapeErr)
	}

	res := frontDoorRow{Row: "m", Clients: clients, Seconds: f.duration.Seconds(), Errors: map[string]int{}, ClientCPU: cpuTo - cpuFrom}
	var all []time.Duration
	var total time.Duration
	for _, l := range logs {
		all = append(all, l.latencies...)
		res.Interactions += l.interactions
		for code, n := range l.errors {
			res.Errors[code] += n
		}
	}
	slices.Sort(all)
	for _, d := range all {
		total += d
	}
	res.Requests = len(all)
	res.ReqPerSec = float64(res.Requests) / res.Seconds
	res.IntPerSec = float64(res.Interactions) / res.Seconds
	res.P50Ms = ms(Percentile(all, 50))
	res.P99Ms = ms(Percentile(all, 99))
	if len(all) > 0 {
		res.MeanMs = ms(total / time.Duration(len(all)))
	}
	res.ResourceExhausted = res.Errors[codeName(codes.ResourceExhausted)]
	if f.metrics != "" {
		res.Server = window(before, after, f.duration)
	}
	return res, nil
}

// runClient sends reqs in order from start, wrapping around, until ctx ends,
// and records the requests that end between from and to.
func runClient(ctx context.Context, conn *grpc.ClientConn, reqs []request, start int, timeout time.Duration, from, to time.Time) clientLog {
	l := clientLog{errors: map[string]int{}}
	var resp apis.PredictResponse
	for i := start; ctx.Err() == nil; i++ {
		r := reqs[i%len(reqs)]
		began := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		resp.Reset()
		err := conn.Invoke(callCtx, "/tensorflow.serving.PredictionService/Predict", r.msg, &resp)
		cancel()
		ended := time.Now()
		if ended.Before(from) || ended.After(to) {
			continue // warm-up, or cut by the window's end
		}
		switch {
		case err != nil:
			l.errors[codeName(status.Code(err))]++
		case len(resp.GetOutputs()["pred_all"].GetFloatVal()) != r.values:
			l.errors["INCOMPLETE"]++
		default:
			l.latencies = append(l.latencies, ended.Sub(began))
			l.interactions += r.real
		}
	}
	return l
}

// Percentile is the nearest-rank p-th percentile of sorted (p in [0, 100]);
// 0 when sorted is empty. bench/run.py's pct picks the same element.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(p/100*float64(len(sorted)-1) + 0.5)
	return sorted[min(len(sorted)-1, max(0, k))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// codeName spells a gRPC code as TF Serving and model-server's metrics do:
// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ...
func codeName(c codes.Code) string {
	var b strings.Builder
	prev := ' '
	for _, r := range c.String() {
		if unicode.IsUpper(r) && unicode.IsLower(prev) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
		prev = r
	}
	return b.String()
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-time.After(time.Until(t)):
	case <-ctx.Done():
	}
}
