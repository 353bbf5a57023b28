package modelserver

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/prometheus/client_golang/prometheus"
	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"
	apis "github.com/wamuir/graft/tensorflow/serving/apis_go_proto"

	"github.com/dktscore/dktscore/engine"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/worker"
)

// Server answers TF Serving's Predict for one model: it checks each
// request, unpads its rows by sequence_len, queues them for the batcher
// together with other clients' rows, and reassembles the response exactly as
// TF Serving would have answered: [B, max_steps, S], the padded positions
// holding what the model gives there.
//
// Event order of a call. Predict decodes the request and queues all its
// rows, or refuses at once (RESOURCE_EXHAUSTED) when they do not fit. The
// pipeline's source takes rows off the queue; one whose call has ended is
// skipped, and a call that ends takes its waiting rows out itself, so
// nothing is scored — or kept — for a caller who left. The sink delivers
// each scored row to its call; the call's last row wakes Predict, which
// answers. A row the pipeline cannot score (it stopped, the model failed)
// fails its call with UNAVAILABLE.
type Server struct {
	cfg       Config
	versions  *model.Versions
	numSkills int
	batches   *worker.Metrics
	requests  *requestMetrics
	progress  *worker.Progress
	status    *versionStatus

	queue *queue

	padded sync.Map // "name/version" → []float32, what the model gives at a padded step
}

// newServer prepares the server for versions, with its metrics on
// registry; Run starts its pipeline.
func newServer(cfg Config, versions *model.Versions, status *versionStatus, registry prometheus.Registerer) (*Server, error) {
	m := versions.Current()
	progress := new(worker.Progress)
	s := &Server{cfg: cfg, versions: versions, numSkills: m.NumSkills, status: status, queue: newQueue(cfg.MaxQueuedSequences),
		progress: progress, batches: worker.NewMetrics(registry, progress, nil), requests: newRequestMetrics(registry)}
	if _, err := s.paddedStep(context.Background(), m.Name+"/"+m.Version); err != nil {
		return nil, err
	}
	return s, nil
}

// call is one Predict request in flight.
type call struct {
	ctx       context.Context
	decoded   decodedRequest
	rows      []*row
	results   [][]float32 // per row: pred_all[0:len, :]
	versions  []string    // per row: the "name/version" that scored it
	remaining atomic.Int32
	done      chan struct{}
	mu        sync.Mutex
	err       error // the first row's failure
}

// row is one sequence of a call on its way through the pipeline.
type row struct {
	call    *call
	index   int
	waiting *list.Element // its place in the queue while it waits; guarded by the queue's lock
}

func (c *call) deliver(i int, trajectory []float32, version string) {
	c.results[i], c.versions[i] = trajectory, version
	c.finishRow()
}

func (c *call) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.finishRow()
}

func (c *call) finishRow() {
	if c.remaining.Add(-1) == 0 {
		close(c.done)
	}
}

var errStopped = errors.New("the server is stopping")

// enqueue queues the call's rows, or refuses the call.
func (s *Server) enqueue(c *call) error {
	if n := len(c.decoded.seqs); n > s.cfg.MaxQueuedSequences {
		return status.Errorf(codes.InvalidArgument, "the request has %d sequences, more than the server queues at once (%d, --max-queued-sequences); split it",
			n, s.cfg.MaxQueuedSequences)
	}
	c.rows = make([]*row, len(c.decoded.seqs))
	for i := range c.rows {
		c.rows[i] = &row{call: c, index: i}
	}
	return s.queue.push(c.rows)
}

// source hands the pipeline the queued rows.
type source struct{ s *Server }

func (src source) Read(ctx context.Context) (worker.Work, worker.Ack, error) {
	for {
		r, err := src.s.queue.pop(ctx)
		if err != nil {
			return worker.Work{}, nil, err
		}
		if err := r.call.ctx.Err(); err != nil {
			r.call.fail(err) // the caller left: do not score it
			continue
		}
		seq := r.call.decoded.seqs[r.index]
		ack := func(err error) {
			if err != nil {
				r.call.fail(fmt.Errorf("the model could not score the request: %w", err))
			}
		}
		return worker.Work{Seq: records.Sequence{Skills: seq.skills, Correct: seq.correct}, Source: r}, ack, nil
	}
}

// sink hands each scored row back to its call. The trajectory slices stay
// valid: the pipeline allocates a batch's outputs per batch.
type sink struct{}

func (sink) Write(_ context.Context, results []worker.Result) error {
	for _, res := range results {
		r := res.Source.(*row)
		r.call.deliver(r.index, res.Trajectory, res.ModelVersion)
	}
	return nil
}

// rejects never sees a row: every row is validated before it is queued.
type rejects struct{}

func (rejects) Reject(_ context.Context, w worker.Work) error {
	w.Source.(*row).call.fail(w.Reject)
	return nil
}

// Run runs the batching pipeline until ctx ends, then scores what is queued
// and fails whatever is left, so no caller waits for a pipeline that is gone.
func (s *Server) Run(ctx context.Context) error {
	// A caller waits for its answer: an idle session takes a request at
	// once, and only while every session is busy do requests gather into
	// fuller batches (for at most MaxDelay).
	batches := s.cfg.Batching.Config(s.numSkills)
	batches.FlushWhenIdle = true
	// One batch the model cannot run fails its own callers, not the server.
	cfg := worker.Config{Batching: batches, Engines: s.cfg.Sessions, Trajectory: true, FailBatchOnly: true, Observer: s.batches}
	_, err := worker.Run(ctx, cfg, source{s}, engine.Of(s.versions), sink{}, rejects{}, s.progress)
	for _, r := range s.queue.close() {
		r.call.fail(errStopped)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Predict answers tensorflow.serving.PredictionService/Predict.
func (s *Server) Predict(ctx context.Context, req *apis.PredictRequest) (*apis.PredictResponse, error) {
	name, version, err := s.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	sig := req.GetModelSpec().GetSignatureName()
	if err := checkSignature(sig); err != nil {
		return nil, err
	}
	for _, f := range req.GetOutputFilter() {
		if f != outputPredAll {
			return nil, status.Errorf(codes.InvalidArgument, "output_filter names %q; signature %s has the one output %s", f, sig, outputPredAll)
		}
	}
	decoded, err := decodeInputs(sig, req.GetInputs(), s.numSkills, s.cfg.MaxRequestBytes/4)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := ctx.Err(); err != nil {
		return nil, contextStatus(err)
	}
	c := &call{ctx: ctx, decoded: decoded, results: make([][]float32, decoded.rows), versions: make([]string, decoded.rows),
		done: make(chan struct{})}
	c.remaining.Store(int32(decoded.rows))
	if err := s.enqueue(c); err != nil {
		return nil, err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		s.queue.remove(c.rows)
		return nil, contextStatus(ctx.Err())
	}
	if c.err != nil {
		if ctx.Err() != nil {
			return nil, contextStatus(ctx.Err())
		}
		return nil, status.Error(codes.Unavailable, c.err.Error())
	}
	scoredBy := c.versions[0]
	for _, v := range c.versions[1:] {
		if v != scoredBy {
			return nil, status.Errorf(codes.Unavailable, "model %s changed version while the request was scored (%s and %s); retry", name, scoredBy, v)
		}
	}
	// scoredBy is the version directory's "base/version"; requests name the
	// model by --model_name, so only the version number is compared.
	number := versionNumber(scoredBy)
	if version >= 0 && number != version {
		return nil, status.Errorf(codes.Unavailable, "version %d of model %s was replaced by version %d while the request waited; retry", version, name, number)
	}
	padded, err := s.paddedStep(ctx, scoredBy)
	if err != nil {
		return nil, err
	}
	return &apis.PredictResponse{
		ModelSpec: &apis.ModelSpec{Name: name, VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(number)}, SignatureName: sig},
		Outputs:   map[string]*tensorProto{outputPredAll: s.assemble(c, padded)},
	}, nil
}

// assemble lays the rows out as pred_all [B, T, S]: each row's real steps,
// then the padded step's answer up to T.
func (s *Server) assemble(c *call, padded []float32) *tensorProto {
	b, t, k := c.decoded.rows, c.decoded.steps, s.numSkills
	values := make([]float32, b*t*k)
	for i, traj := range c.results {
		row := values[i*t*k : (i+1)*t*k]
		n := copy(row, traj)
		for at := n; at < len(row); at += k {
			copy(row[at:at+k], padded)
		}
	}
	return floatTensor([]int{b, t, k}, values)
}

// paddedStep is what version ("name/version") gives at a padded step,
// computed once per version, on that version while it is being served.
func (s *Server) paddedStep(ctx context.Context, version string) ([]float32, error) {
	if p, ok := s.padded.Load(version); ok {
		return p.([]float32), nil
	}
	m, release := s.versions.Acquire()
	defer release()
	if m.Name+"/"+m.Version != version {
		return nil, status.Errorf(codes.Unavailable, "model version %s was replaced by %s/%s while the request was scored; retry", version, m.Name, m.Version)
	}
	// Not the caller's deadline: this is computed once, for every caller.
	p, err := m.PaddedStep(context.WithoutCancel(ctx))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "model %s: %v", version, err)
	}
	s.padded.Store(version, p)
	return p, nil
}

// resolve checks a request's model_spec against the served model and
// returns its name and the version number it asks for (-1 = the latest).
func (s *Server) resolve(spec *apis.ModelSpec) (name string, version int64, err error) {
	name = spec.GetName()
	if name != s.cfg.ModelName {
		return "", 0, status.Errorf(codes.NotFound, "Servable not found for request: model %q; this server serves %q (--model_name)", name, s.cfg.ModelName)
	}
	if label := spec.GetVersionLabel(); label != "" {
		return "", 0, status.Errorf(codes.NotFound, "model %s has no version labelled %q: dktscore assigns no version labels; ask for model_spec.version or leave both unset for the latest", name, label)
	}
	version = -1
	if v := spec.GetVersion(); v != nil {
		version = v.GetValue()
		if serving := s.status.serving(); version != serving {
			return "", 0, status.Errorf(codes.NotFound, "Servable not found for request: model %s version %d; version %d is available", name, version, serving)
		}
	}
	return name, version, nil
}

func checkSignature(sig string) error {
	switch sig {
	case SignaturePredict, SignaturePredictIDs:
		return nil
	case "", defaultSignature:
		return status.Errorf(codes.InvalidArgument, "Serving signature name: %q not found in signature def: the model has no %s signature; set model_spec.signature_name to %s (the origin's one-hot inputs) or %s",
			defaultSignature, defaultSignature, SignaturePredict, SignaturePredictIDs)
	}
	return status.Errorf(codes.InvalidArgument, "Serving signature name: %q is not served: model-server batches %s and %s", sig, SignaturePredict, SignaturePredictIDs)
}

// versionNumber is the number of a "name/version" (a version directory's
// name, which may have leading zeros).
func versionNumber(nameVersion string) int64 {
	_, v, _ := strings.Cut(nameVersion, "/")
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// contextStatus is a caller's ended context as TF Serving reports it.
func contextStatus(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "the request's deadline passed before it was scored")
	}
	return status.Error(codes.Canceled, "the request was cancelled")
}

type tensorProto = tensorpb.TensorProto
