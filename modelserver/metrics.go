package modelserver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// requestMetrics counts the API's calls; the batches they become are counted
// by the pipeline's own dktscore_* series (batch size, padding efficiency,
// inference time).
type requestMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newRequestMetrics(reg prometheus.Registerer) *requestMetrics {
	m := &requestMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dktscore_requests_total",
			Help: "TF Serving API calls by transport (grpc, rest), method and status code (OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...)."},
			[]string{"api", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "dktscore_request_duration_seconds",
			Help: "TF Serving API call latency, from the request's arrival to its answer.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)},
			[]string{"api", "method"}),
	}
	reg.MustRegister(m.calls, m.duration)
	return m
}

func (m *requestMetrics) observe(api, method string, code codes.Code, took time.Duration) {
	m.calls.WithLabelValues(api, method, statusName(code)).Inc()
	m.duration.WithLabelValues(api, method).Observe(took.Seconds())
}

// statusNames spell codes as TF Serving's docs and errors do.
var statusNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// statusName spells a code as TF Serving does: OK, INVALID_ARGUMENT, ...
func statusName(c codes.Code) string {
	if n, ok := statusNames[c]; ok {
		return n
	}
	return c.String()
}
