package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/modelserver"
)

func shapeOf(p *tensorpb.TensorProto) []int {
	var out []int
	for _, d := range p.GetTensorShape().GetDim() {
		out = append(out, int(d.GetSize()))
	}
	return out
}

// floatsOf and intsOf read a tensor as TensorFlow does: tensor_content when
// present, else the typed field.
func floatsOf(p *tensorpb.TensorProto) []float32 {
	if c := p.GetTensorContent(); len(c) > 0 {
		out := make([]float32, len(c)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(c[4*i:]))
		}
		return out
	}
	return p.GetFloatVal()
}

func intsOf(p *tensorpb.TensorProto) []int32 {
	if c := p.GetTensorContent(); len(c) > 0 {
		out := make([]int32, len(c)/4)
		for i := range out {
			out[i] = int32(binary.LittleEndian.Uint32(c[4*i:]))
		}
		return out
	}
	return p.GetIntVal()
}

func TestNewRequestIsTheOriginsOneHotRequest(t *testing.T) {
	const numSkills = 6
	student := records.Sequence{Skills: []int32{3, 5, 3}, Correct: []int8{1, 0, 1}}
	for _, tc := range []struct {
		name          string
		padTo, steps  int
		wantTargetIDs []int32
		hotAt         []int // per real step: the index of the 1 in input_x
	}{
		{name: "own length", padTo: 0, steps: 3, wantTargetIDs: []int32{5, 3, 0}, hotAt: []int{9, 5, 9}},
		{name: "padded", padTo: 5, steps: 5, wantTargetIDs: []int32{5, 3, 0, 0, 0}, hotAt: []int{9, 5, 9}},
		{name: "pad-to shorter than the student", padTo: 2, steps: 3, wantTargetIDs: []int32{5, 3, 0}, hotAt: []int{9, 5, 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest("builder", numSkills, student, tc.padTo)
			if r.values != tc.steps*numSkills || r.real != 3 {
				t.Fatalf("request expects %d values for %d interactions, want %d and 3", r.values, r.real, tc.steps*numSkills)
			}
			if spec := r.msg.GetModelSpec(); spec.GetName() != "builder" || spec.GetSignatureName() != "predict" {
				t.Fatalf("model_spec %v, want builder / predict", spec)
			}
			in := r.msg.GetInputs()
			if len(in) != 6 {
				t.Fatalf("%d inputs, want the 6 of the predict signature", len(in))
			}
			x := in["input_x"]
			if got := shapeOf(x); !slices.Equal(got, []int{1, tc.steps, 2 * numSkills}) {
				t.Fatalf("input_x shape %v", got)
			}
			if len(x.GetTensorContent()) != 4*tc.steps*2*numSkills {
				t.Fatalf("input_x is not sent as tensor_content (%d bytes)", len(x.GetTensorContent()))
			}
			values := floatsOf(x)
			for step := range tc.steps {
				row := values[step*2*numSkills : (step+1)*2*numSkills]
				want := make([]float32, 2*numSkills)
				if step < len(tc.hotAt) {
					want[tc.hotAt[step]] = 1 // skill + num_skills·correct
				}
				if !slices.Equal(row, want) {
					t.Errorf("input_x[0, %d] = %v, want %v", step, row, want)
				}
			}
			if got := intsOf(in["target_id"]); !slices.Equal(got, tc.wantTargetIDs) || !slices.Equal(shapeOf(in["target_id"]), []int{1, tc.steps}) {
				t.Errorf("target_id %v shape %v, want %v", got, shapeOf(in["target_id"]), tc.wantTargetIDs)
			}
			scalars := map[string]int32{"max_steps": int32(tc.steps), "batch_size": 1}
			for name, want := range scalars {
				if got := intsOf(in[name]); len(shapeOf(in[name])) != 0 || !slices.Equal(got, []int32{want}) {
					t.Errorf("%s = %v shape %v, want the scalar %d", name, got, shapeOf(in[name]), want)
				}
			}
			if got := floatsOf(in["keep_prob"]); !slices.Equal(got, []float32{1}) || len(shapeOf(in["keep_prob"])) != 0 {
				t.Errorf("keep_prob = %v, want the scalar 1.0", got)
			}
			if got := in["sequence_len"].GetIntVal(); !slices.Equal(got, []int32{3}) || !slices.Equal(shapeOf(in["sequence_len"]), []int{1}) {
				t.Errorf("sequence_len = %v (int_val, as make_tensor_proto sends one value), want [3]", got)
			}
		})
	}
}

func TestPercentileIsTheNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even rounds up", ms(1, 2, 3, 4), 50, 3 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"p0", ms(1, 2, 3), 0, 1 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.p); got != tc.want {
				t.Fatalf("Percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestCodeNameIsTFServingsSpelling(t *testing.T) {
	for code, want := range map[codes.Code]string{codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.OK: "OK",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.Unavailable: "UNAVAILABLE", codes.InvalidArgument: "INVALID_ARGUMENT"} {
		if got := codeName(code); got != want {
			t.Errorf("codeName(%v) = %q, want %q", code, got, want)
		}
	}
}

func TestWindowIsTheDifferenceOfTwoScrapes(t *testing.T) {
	scrapeText := func(batches, sequences, idle, delay int, inference, real, computed float64) metricSample {
		text := fmt.Sprintf(`# HELP dktscore_batch_size Sequences per scored batch.
# TYPE dktscore_batch_size histogram
dktscore_batch_size_bucket{le="1"} 3
dktscore_batch_size_sum %d
dktscore_batch_size_count %d
dktscore_batch_flushes_total{reason="delay"} %d
dktscore_batch_flushes_total{reason="idle"} %d
dktscore_batch_flushes_total{reason="size"} 0
dktscore_inference_seconds_sum %g
dktscore_real_steps_total %g
dktscore_computed_steps_total %g
process_cpu_seconds_total %g
`, sequences, batches, delay, idle, inference, real, computed, 2*inference)
		m, err := parseMetrics(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := scrapeText(10, 12, 8, 2, 1.5, 1000, 1100)
	after := scrapeText(30, 72, 18, 12, 9.5, 5000, 5500)
	w := window(before, after, 4*time.Second)
	want := serverWindow{Batches: 20, Sequences: 60, MeanBatchSize: 3, Flushes: map[string]int{"idle": 10, "delay": 10},
		InferenceSeconds: 8, BusySessions: 2, Padding: 4000.0 / 4400, CPUSeconds: 16}
	got, _ := json.Marshal(w)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(got, wantJSON) {
		t.Fatalf("window %s, want %s", got, wantJSON)
	}
}

// The load generator against a real model-server, in this process: every
// answer complete, the window's requests counted, the server's batches read.
func TestFrontDoorAgainstModelServer(t *testing.T) {
	grpcPort, opsAddr := freeAddr(t), freeAddr(t)
	var cfg modelserver.Config
	_, err := modelserver.Settings(&cfg).Resolve([]string{"--port=" + grpcPort[strings.LastIndexByte(grpcPort, ':')+1:],
		"--model_name=builder", "--model_base_path=" + testModel, "--file_system_poll_wait_seconds=0"},
		[]string{"DKTSCORE_HTTP_ADDR=" + opsAddr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- modelserver.Serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("model-server: %v", err)
		}
	}()
	waitReady(t, ctx, "http://"+opsAddr+"/readyz", served)

	input := firstStudents(t, testSplit, 20)
	var f FrontDoorFlags
	set := config.NewSet("dktscore bench", config.FlagsOnly)
	f.Declare(set)
	if _, err := set.Resolve([]string{"--target=" + grpcPort, "--clients=1,4", "--duration=1s", "--warmup-time=200ms",
		"--metrics=http://" + opsAddr + "/metrics"}, nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := FrontDoor(ctx, input, &f, true, &out); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	var rows []frontDoorRow
	for sc.Scan() {
		var r frontDoorRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 2 || rows[0].Clients != 1 || rows[1].Clients != 4 {
		t.Fatalf("rows %+v, want one for 1 and one for 4 clients", rows)
	}
	for _, r := range rows {
		if r.Requests == 0 || len(r.Errors) != 0 || r.Students != 20 {
			t.Errorf("%d clients: %d complete answers from %d students, errors %v; want some, from 20, none", r.Clients, r.Requests, r.Students, r.Errors)
		}
		if r.P50Ms <= 0 || r.P99Ms < r.P50Ms || r.Interactions < r.Requests {
			t.Errorf("%d clients: p50 %v ms, p99 %v ms, %d interactions in %d requests", r.Clients, r.P50Ms, r.P99Ms, r.Interactions, r.Requests)
		}
		// The scrapes bracket the window only roughly (a batch in flight at
		// either edge falls on one side), so only their presence is checked.
		if r.Server == nil || r.Server.Batches == 0 || r.Server.MeanBatchSize < 1 {
			t.Errorf("%d clients: server window %+v; want the batches of the window", r.Clients, r.Server)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(t *testing.T, ctx context.Context, url string, served <-chan error) {
	t.Helper()
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-served:
			t.Fatalf("model-server stopped before it was ready: %v", err)
		case <-ctx.Done():
			t.Fatal("model-server not ready")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// firstStudents writes the first n students of a DKT 3-line file to a file
// of their own.
func firstStudents(t *testing.T, path string, n int) string {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(text), "\n")
	out := filepath.Join(t.TempDir(), "students.csv")
	if err := os.WriteFile(out, []byte(strings.Join(lines[:3*n], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
