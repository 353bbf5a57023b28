package supervise

import (
	"encoding/json"
	"net/http"
)

// Report is the JSON body of HealthHandler and ReadyHandler.
type Report struct {
	// Status is "ok" when every child passes the check, else "unavailable".
	Status   string        `json:"status"`
	Children []ChildStatus `json:"children"`
}

// HealthHandler serves the children's aggregate liveness for the parent's
// /healthz: 200 when every child runs and answers its /healthz, else 503, with a
// Report either way. While a child waits out a restart backoff the parent is
// unhealthy; an orchestrator whose liveness probe tolerates a few failures
// (failureThreshold) lets the supervisor restart the child first.
func (s *Supervisor) HealthHandler() http.Handler {
	return s.handler(func(c ChildStatus) bool { return c.Healthy })
}

// ReadyHandler serves the aggregate readiness for the parent's /readyz: 200
// when every child answers its /readyz (model loaded, broker reachable).
func (s *Supervisor) ReadyHandler() http.Handler {
	return s.handler(func(c ChildStatus) bool { return c.Ready })
}

func (s *Supervisor) handler(pass func(ChildStatus) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := Report{Status: "ok", Children: s.Status()}
		code := http.StatusOK
		for _, c := range rep.Children {
			if !pass(c) {
				rep.Status, code = "unavailable", http.StatusServiceUnavailable
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	})
}
