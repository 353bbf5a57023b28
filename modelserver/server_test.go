package modelserver

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"
	apis "github.com/wamuir/graft/tensorflow/serving/apis_go_proto"

	"github.com/dktscore/dktscore/model"
	"github.com/prometheus/client_golang/prometheus"
)

const bundledModel = "../models/dkt"

// newTestServer serves the bundled model; its pipeline is not running until
// the test starts it, so the queue can be observed.
func newTestServer(t *testing.T, queue int) *Server {
	t.Helper()
	var cfg Config
	if _, err := Settings(&cfg).Resolve([]string{"--model_base_path=" + bundledModel, "--model_name=builder", "--sessions=1",
		"--max-queued-sequences=" + strconv.Itoa(queue)}, nil); err != nil {
		t.Fatal(err)
	}
	status := newVersionStatus()
	versions, err := model.OpenVersions(model.VersionsConfig{Base: bundledModel, Load: model.Config{Sessions: 1}, Report: status.record})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { versions.Close() })
	s, err := newServer(cfg, versions, status, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// request is one student of n steps for the compact signature.
func request(n int) *apis.PredictRequest {
	skills, correct := make([]int32, n), make([]int32, n)
	for i := range n {
		skills[i], correct[i] = int32(i%124), int32(i%2)
	}
	return &apis.PredictRequest{ModelSpec: &apis.ModelSpec{Name: "builder", SignatureName: SignaturePredictIDs},
		Inputs: map[string]*tensorpb.TensorProto{
			"skill_id": ints(skills, 1, n), "correct": ints(correct, 1, n), "sequence_len": ints([]int32{int32(n)}, 1),
		}}
}

func runPipeline(t *testing.T, s *Server) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
	})
}

func TestAFullQueueRefusesAtOnceAndALeftCallFreesItsSlot(t *testing.T) {
	s := newTestServer(t, 2)
	// The pipeline is not running: two one-row calls fill the queue.
	left, leave := context.WithCancel(context.Background())
	waiting := make(chan error, 2)
	go func() { _, err := s.Predict(left, request(3)); waiting <- err }()
	go func() { _, err := s.Predict(left, request(4)); waiting <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for s.queue.len() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	started := time.Now()
	_, err := s.Predict(context.Background(), request(5))
	if status.Code(err) != codes.ResourceExhausted || time.Since(started) > time.Second {
		t.Fatalf("third call: %v after %v, want RESOURCE_EXHAUSTED at once", err, time.Since(started))
	}
	leave() // both callers give up: their rows leave the queue at once
	for range 2 {
		if err := <-waiting; status.Code(err) != codes.Canceled {
			t.Fatalf("left call: %v, want CANCELLED", err)
		}
	}
	if q := s.queue.len(); q != 0 {
		t.Fatalf("%d rows still queued, want the left calls' slots freed", q)
	}
	runPipeline(t, s)
	resp, err := s.Predict(context.Background(), request(6))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetOutputs()["pred_all"].GetFloatVal()); n != 6*124 {
		t.Fatalf("answer has %d values, want 6×124", n)
	}
	if scored := s.progress.Students.Load(); scored != 1 {
		t.Fatalf("%d sequences scored, want only the answered one (nothing for a caller who left)", scored)
	}
}

func TestAPassedDeadlineIsNotRun(t *testing.T) {
	s := newTestServer(t, 8)
	runPipeline(t, s)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := s.Predict(ctx, request(3)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err %v, want DEADLINE_EXCEEDED", err)
	}
	if scored := s.progress.Students.Load(); scored != 0 {
		t.Fatalf("%d sequences scored for a call past its deadline", scored)
	}
}

func TestModelSpecIsResolvedAsTFServingDoes(t *testing.T) {
	s := newTestServer(t, 8)
	runPipeline(t, s)
	for name, c := range map[string]struct {
		spec *apis.ModelSpec
		code codes.Code
	}{
		"other model":         {&apis.ModelSpec{Name: "other", SignatureName: SignaturePredictIDs}, codes.NotFound},
		"missing version":     {&apis.ModelSpec{Name: "builder", SignatureName: SignaturePredictIDs, VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(7)}}, codes.NotFound},
		"a label":             {&apis.ModelSpec{Name: "builder", SignatureName: SignaturePredictIDs, VersionChoice: &apis.ModelSpec_VersionLabel{VersionLabel: "stable"}}, codes.NotFound},
		"serving_default":     {&apis.ModelSpec{Name: "builder"}, codes.InvalidArgument},
		"the step signature":  {&apis.ModelSpec{Name: "builder", SignatureName: "step"}, codes.InvalidArgument},
		"the serving version": {&apis.ModelSpec{Name: "builder", SignatureName: SignaturePredictIDs, VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(1)}}, codes.OK},
	} {
		t.Run(name, func(t *testing.T) {
			req := request(2)
			req.ModelSpec = c.spec
			resp, err := s.Predict(context.Background(), req)
			if status.Code(err) != c.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, c.code)
			}
			if err == nil && (resp.GetModelSpec().GetName() != "builder" || resp.GetModelSpec().GetVersion().GetValue() != 1) {
				t.Fatalf("model_spec %v, want builder version 1", resp.GetModelSpec())
			}
		})
	}
}
