package modelserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"
	shapepb "github.com/wamuir/graft/tensorflow/core/framework/tensor_shape_go_proto"
	typespb "github.com/wamuir/graft/tensorflow/core/framework/types_go_proto"
	apis "github.com/wamuir/graft/tensorflow/serving/apis_go_proto"
)

// restHandler serves TF Serving's REST API:
//
//	POST /v1/models/NAME[/versions/V | /labels/L]:predict   {"signature_name": ..., "inputs": {...}}
//	GET  /v1/models/NAME[/versions/V | /labels/L]           the versions' status
//	GET  /v1/models/NAME[/versions/V | /labels/L]/metadata  the signature_def map
//
// Errors are {"error": "..."} with TF Serving's HTTP code for the gRPC code.
func (s *Server) restHandler(ops http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", ops)
	mux.Handle("/healthz", ops)
	mux.Handle("/readyz", ops)
	mux.HandleFunc("/v1/models/", func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		method, err := s.serveREST(w, r)
		if err != nil {
			writeError(w, err)
		}
		s.requests.observe("rest", method, status.Code(err), time.Since(started))
	})
	return mux
}

// serveREST routes one /v1/models/ request; it returns the method's name
// (for metrics) and the error to answer with.
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request) (string, error) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	path, verb, hasVerb := strings.Cut(path, ":")
	parts := strings.Split(path, "/")
	spec := &apis.ModelSpec{Name: parts[0]}
	rest := parts[1:]
	if len(rest) >= 2 && (rest[0] == "versions" || rest[0] == "labels") {
		if rest[0] == "labels" {
			spec.VersionChoice = &apis.ModelSpec_VersionLabel{VersionLabel: rest[1]}
		} else {
			v, err := strconv.ParseInt(rest[1], 10, 64)
			if err != nil {
				return "", status.Errorf(codes.InvalidArgument, "version %q in the URL is not a number", rest[1])
			}
			spec.VersionChoice = &apis.ModelSpec_Version{Version: wrapperspb.Int64(v)}
		}
		rest = rest[2:]
	}
	switch {
	case hasVerb && len(rest) == 0 && r.Method == http.MethodPost:
		if verb != "predict" {
			// The verb is the client's: it never becomes a metric label.
			return "unknown", status.Errorf(codes.Unimplemented, "%q: dktscore model-server answers :predict only", verb)
		}
		return "Predict", s.restPredict(w, r, spec)
	case !hasVerb && len(rest) == 0 && r.Method == http.MethodGet:
		resp, err := s.GetModelStatus(r.Context(), &apis.GetModelStatusRequest{ModelSpec: spec})
		if err != nil {
			return "GetModelStatus", err
		}
		return "GetModelStatus", writeProto(w, resp)
	case !hasVerb && len(rest) == 1 && rest[0] == "metadata" && r.Method == http.MethodGet:
		resp, err := s.GetModelMetadata(r.Context(), &apis.GetModelMetadataRequest{ModelSpec: spec, MetadataField: []string{"signature_def"}})
		if err != nil {
			return "GetModelMetadata", err
		}
		return "GetModelMetadata", writeMetadata(w, resp)
	}
	return "", status.Errorf(codes.NotFound, "%s %s is not part of the API: POST /v1/models/NAME:predict, GET /v1/models/NAME, GET /v1/models/NAME/metadata", r.Method, r.URL.Path)
}

// restRequest is the columnar predict request; "instances" (the row format)
// is recognised only to refuse it with the reason.
type restRequest struct {
	SignatureName string                     `json:"signature_name"`
	Inputs        map[string]json.RawMessage `json:"inputs"`
	Instances     json.RawMessage            `json:"instances"`
}

func (s *Server) restPredict(w http.ResponseWriter, r *http.Request, spec *apis.ModelSpec) error {
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(s.cfg.RESTTimeoutMillis)*time.Millisecond)
	defer cancel()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxRequestBytes)))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return bodyTooLarge{status.Newf(codes.ResourceExhausted, "the request body is larger than %d bytes (--max-request-bytes)", s.cfg.MaxRequestBytes)}
	}
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "reading the request body: %v", err)
	}
	var req restRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return status.Errorf(codes.InvalidArgument, "the request body is not a JSON object {\"signature_name\": ..., \"inputs\": {...}}: %v", err)
	}
	if req.Instances != nil {
		return status.Error(codes.InvalidArgument, "\"instances\" (the row format) cannot carry this model's scalar inputs (max_steps, keep_prob, batch_size); send the columnar \"inputs\" form: {\"signature_name\": \"predict\", \"inputs\": {\"input_x\": [...], ...}}")
	}
	if req.Inputs == nil {
		return status.Error(codes.InvalidArgument, "the request has no \"inputs\"; send {\"signature_name\": \"predict\", \"inputs\": {\"input_x\": [...], ...}}")
	}
	spec.SignatureName = req.SignatureName
	if err := checkSignature(req.SignatureName); err != nil {
		return err
	}
	inputs := map[string]*tensorpb.TensorProto{}
	for name, raw := range req.Inputs {
		dtype := typespb.DataType_DT_FLOAT
		for _, in := range signatureInputs[req.SignatureName] {
			if in.name == name {
				dtype = in.dtype
			}
		}
		t, err := jsonTensor(name, raw, dtype, s.cfg.MaxRequestBytes/4)
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		inputs[name] = t
	}
	resp, err := s.Predict(ctx, &apis.PredictRequest{ModelSpec: spec, Inputs: inputs})
	if err != nil {
		return err
	}
	out := resp.GetOutputs()[outputPredAll]
	w.Header().Set("Content-Type", "application/json")
	return writeNested(w, out)
}

// jsonTensor reads a JSON number or nested arrays of numbers as a tensor of
// dtype; the nesting gives the shape, which must be rectangular.
func jsonTensor(name string, raw json.RawMessage, dtype typespb.DataType, maxElements int) (*tensorpb.TensorProto, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		return nil, fmt.Errorf("input %s is not valid JSON: %v", name, err)
	}
	var shape []int
	for v := value; ; {
		list, ok := v.([]any)
		if !ok {
			break
		}
		shape = append(shape, len(list))
		if len(list) == 0 {
			break
		}
		v = list[0]
	}
	if elements(shape) > maxElements {
		return nil, fmt.Errorf("input %s holds more than %d values, the most a request may", name, maxElements)
	}
	t := &tensorpb.TensorProto{Dtype: dtype, TensorShape: &shapepb.TensorShapeProto{}}
	for _, d := range shape {
		t.TensorShape.Dim = append(t.TensorShape.Dim, &shapepb.TensorShapeProto_Dim{Size: int64(d)})
	}
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		if depth < len(shape) {
			list, ok := v.([]any)
			if !ok || len(list) != shape[depth] {
				return fmt.Errorf("input %s is not rectangular: every array at depth %d must hold %d values", name, depth, shape[depth])
			}
			for _, item := range list {
				if err := walk(item, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("input %s holds %s where a number belongs", name, jsonKind(v))
		}
		if dtype == typespb.DataType_DT_INT32 {
			i, err := strconv.ParseInt(n.String(), 10, 32)
			if err != nil {
				return fmt.Errorf("input %s: %s is not an int32", name, n)
			}
			t.IntVal = append(t.IntVal, int32(i))
			return nil
		}
		f, err := strconv.ParseFloat(n.String(), 32)
		if err != nil {
			return fmt.Errorf("input %s: %s is not a float32", name, n)
		}
		t.FloatVal = append(t.FloatVal, float32(f))
		return nil
	}
	return t, walk(value, 0)
}

// jsonKind names a decoded JSON value's type for a message.
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "an array"
}

// writeNested writes {"outputs": pred_all} with pred_all as nested arrays
// ([B][T][S]), the columnar answer for a signature of one output.
func writeNested(w io.Writer, t *tensorpb.TensorProto) error {
	var dims []int
	for _, d := range t.GetTensorShape().GetDim() {
		dims = append(dims, int(d.GetSize()))
	}
	buf := bytes.NewBufferString(`{"outputs": `)
	values := t.GetFloatVal()
	var write func(depth, at int) int
	write = func(depth, at int) int {
		if depth == len(dims) {
			buf.WriteString(strconv.FormatFloat(float64(values[at]), 'g', -1, 32))
			return at + 1
		}
		buf.WriteByte('[')
		for i := range dims[depth] {
			if i > 0 {
				buf.WriteByte(',')
			}
			at = write(depth+1, at)
		}
		buf.WriteByte(']')
		return at
	}
	write(0, 0)
	buf.WriteString("}\n")
	_, err := w.Write(buf.Bytes())
	return err
}

func writeProto(w http.ResponseWriter, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return status.Errorf(codes.Internal, "encoding the answer: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(b)
	return err
}

// writeMetadata writes GetModelMetadata's answer as TF Serving's REST API
// does: the signature_def map inline, without the Any's type URL.
func writeMetadata(w http.ResponseWriter, resp *apis.GetModelMetadataResponse) error {
	var defs apis.SignatureDefMap
	if err := resp.GetMetadata()["signature_def"].UnmarshalTo(&defs); err != nil {
		return status.Errorf(codes.Internal, "decoding the signatures: %v", err)
	}
	opts := protojson.MarshalOptions{UseProtoNames: true}
	spec, err := opts.Marshal(resp.GetModelSpec())
	if err != nil {
		return status.Errorf(codes.Internal, "encoding the answer: %v", err)
	}
	sigs, err := opts.Marshal(&defs)
	if err != nil {
		return status.Errorf(codes.Internal, "encoding the answer: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = fmt.Fprintf(w, `{"model_spec": %s, "metadata": {"signature_def": %s}}`+"\n", spec, sigs)
	return err
}

// httpStatus maps a gRPC code to TF Serving's HTTP status.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499 // client closed the request
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// bodyTooLarge is RESOURCE_EXHAUSTED that REST answers with 413: the body,
// not the server's queue, is the problem.
type bodyTooLarge struct{ st *status.Status }

func (e bodyTooLarge) Error() string              { return e.st.Message() }
func (e bodyTooLarge) GRPCStatus() *status.Status { return e.st }

func writeError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := httpStatus(st.Code())
	if errors.As(err, new(bodyTooLarge)) {
		code = http.StatusRequestEntityTooLarge
	}
	body, _ := json.Marshal(map[string]string{"error": st.Message()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
