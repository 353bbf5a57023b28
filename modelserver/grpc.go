package modelserver

import (
	"context"
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// graft ships the TF Serving API's messages but no gRPC stubs; these
// descriptors serve the real wire names (the origin's generated client
// calls /tensorflow.serving.PredictionService/Predict).
var predictionService = grpc.ServiceDesc{
	ServiceName: "tensorflow.serving.PredictionService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		unary("Predict", (*Server).Predict),
		unary("GetModelMetadata", (*Server).GetModelMetadata),
		unimplemented("Classify", "classification"),
		unimplemented("Regress", "regression"),
		unimplemented("MultiInference", "multi-inference"),
	},
	Metadata: "tensorflow_serving/apis/prediction_service.proto",
}

var modelService = grpc.ServiceDesc{
	ServiceName: "tensorflow.serving.ModelService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		unary("GetModelStatus", (*Server).GetModelStatus),
		unimplemented("HandleReloadConfigRequest", "reloading a model config (new versions are picked up from --model_base_path)"),
	},
	Metadata: "tensorflow_serving/apis/model_service.proto",
}

// unary turns a method of Server into a gRPC handler for messages of type Req.
func unary[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](name string, method func(*Server, context.Context, PReq) (Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
		req := PReq(new(Req))
		if err := dec(req); err != nil {
			return nil, err
		}
		handle := func(ctx context.Context, req any) (any, error) { return method(srv.(*Server), ctx, req.(PReq)) }
		if intercept == nil {
			return handle(ctx, req)
		}
		return intercept(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: name}, handle)
	}}
}

func unimplemented(name, what string) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
		return nil, status.Errorf(codes.Unimplemented, "%s: dktscore model-server does not do %s; the DKT model answers Predict", name, what)
	}}
}

// newGRPCServer serves the TF Serving API and the standard health service
// on one gRPC server. Messages over maxBytes are refused by gRPC itself with
// RESOURCE_EXHAUSTED. With tlsConfig it serves TLS only: a plaintext client
// fails its handshake and gets no answer.
func newGRPCServer(s *Server, maxBytes int, tlsConfig *tls.Config) *grpc.Server {
	options := []grpc.ServerOption{grpc.MaxRecvMsgSize(maxBytes), grpc.UnaryInterceptor(s.observe)}
	if tlsConfig != nil {
		options = append(options, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	g := grpc.NewServer(options...)
	g.RegisterService(&predictionService, s)
	g.RegisterService(&modelService, s)
	healthy := health.NewServer()
	healthy.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthy.SetServingStatus(predictionService.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, healthy)
	return g
}

// observe counts each API call by method and status code and times it.
func (s *Server) observe(ctx context.Context, req any, info *grpc.UnaryServerInfo, handle grpc.UnaryHandler) (any, error) {
	started := time.Now()
	resp, err := handle(ctx, req)
	s.requests.observe("grpc", info.FullMethod, status.Code(err), time.Since(started))
	return resp, err
}
