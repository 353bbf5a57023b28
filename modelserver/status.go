package modelserver

import (
	"context"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	apis "github.com/wamuir/graft/tensorflow/serving/apis_go_proto"
	tslpb "github.com/wamuir/graft/tensorflow/tsl/protobuf/for_core_protos_go_proto"

	"github.com/dktscore/dktscore/model"
)

// versionStatus is what GetModelStatus reports: every version the server
// has tried, AVAILABLE while it serves, END once replaced or refused (with
// the refusal's error), as TF Serving's ModelVersionStatus states go.
// Versions are numbers: directory 007 is version 7.
type versionStatus struct {
	mu       sync.Mutex
	versions map[int64]*apis.ModelVersionStatus
	current  int64
}

func newVersionStatus() *versionStatus {
	return &versionStatus{versions: map[int64]*apis.ModelVersionStatus{}, current: -1}
}

// record follows a load, swap or refusal of model.Versions.
func (v *versionStatus) record(e model.VersionEvent) {
	number := versionNumber(e.Version)
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Err != nil {
		v.versions[number] = &apis.ModelVersionStatus{Version: number, State: apis.ModelVersionStatus_END,
			Status: &apis.StatusProto{ErrorCode: tslpb.Code_UNKNOWN, ErrorMessage: "the version failed to load; the previous one keeps serving"}}
		return
	}
	if old := v.versions[v.current]; old != nil {
		old.State = apis.ModelVersionStatus_END
	}
	v.versions[number] = &apis.ModelVersionStatus{Version: number, State: apis.ModelVersionStatus_AVAILABLE, Status: &apis.StatusProto{}}
	v.current = number
}

// serving is the number of the version being served.
func (v *versionStatus) serving() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.current
}

// list is the statuses of version (-1 = all), newest first. The messages
// are copies: the caller's answer is encoded after the lock is released.
func (v *versionStatus) list(version int64) []*apis.ModelVersionStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*apis.ModelVersionStatus
	for number, st := range v.versions {
		if version < 0 || number == version {
			out = append(out, proto.Clone(st).(*apis.ModelVersionStatus))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version > out[j].Version })
	return out
}

// GetModelStatus answers tensorflow.serving.ModelService/GetModelStatus.
func (s *Server) GetModelStatus(_ context.Context, req *apis.GetModelStatusRequest) (*apis.GetModelStatusResponse, error) {
	spec := req.GetModelSpec()
	if spec.GetName() != s.cfg.ModelName {
		return nil, status.Errorf(codes.NotFound, "Could not find any versions of model %q; this server serves %q (--model_name)", spec.GetName(), s.cfg.ModelName)
	}
	if spec.GetVersionLabel() != "" {
		return nil, status.Errorf(codes.NotFound, "model %s has no version labelled %q: dktscore assigns no version labels", spec.GetName(), spec.GetVersionLabel())
	}
	version := int64(-1)
	if v := spec.GetVersion(); v != nil {
		version = v.GetValue()
	}
	list := s.status.list(version)
	if len(list) == 0 {
		return nil, status.Errorf(codes.NotFound, "Could not find version %d of model %s", version, spec.GetName())
	}
	return &apis.GetModelStatusResponse{ModelVersionStatus: list}, nil
}

// GetModelMetadata answers tensorflow.serving.PredictionService/GetModelMetadata:
// the serving version's signature_def map, as saved_model.pb holds it.
func (s *Server) GetModelMetadata(_ context.Context, req *apis.GetModelMetadataRequest) (*apis.GetModelMetadataResponse, error) {
	name, version, err := s.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	fields := req.GetMetadataField()
	if len(fields) != 1 || fields[0] != "signature_def" {
		return nil, status.Errorf(codes.InvalidArgument, "metadata_field %q: the only metadata is signature_def; ask for [\"signature_def\"]", strings.Join(fields, ", "))
	}
	m, release := s.versions.Acquire()
	dir, number := m.Dir, versionNumber(m.Name+"/"+m.Version)
	release()
	if version >= 0 && version != number {
		return nil, status.Errorf(codes.NotFound, "Servable not found for request: model %s version %d", name, version)
	}
	defs, err := model.SignatureDefs(dir, "serve")
	if err != nil {
		return nil, status.Errorf(codes.Internal, "model %s version %d: %v", name, number, err)
	}
	packed, err := anypb.New(&apis.SignatureDefMap{SignatureDef: defs})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "model %s: %v", name, err)
	}
	return &apis.GetModelMetadataResponse{
		ModelSpec: &apis.ModelSpec{Name: name, VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(number)}},
		Metadata:  map[string]*anypb.Any{"signature_def": packed},
	}, nil
}
