package config

import (
	"sort"
	"strings"
)

// Unknown is a DKTSCORE_* variable that no setting of the command reads.
type Unknown struct {
	Name       string
	Suggestion string // the variable it is probably a typo of; "" when none is close
}

// unknown lists the DKTSCORE_* variables in vars that s does not read. A
// lower-case or mixed-case prefix counts too: Linux variables are
// case-sensitive, so dktscore_model is silently not DKTSCORE_MODEL.
func (s *Set) unknown(vars map[string]string) []Unknown {
	names := s.Names()
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	var out []Unknown
	for name := range vars {
		if len(name) < len(Prefix) || !strings.EqualFold(name[:len(Prefix)], Prefix) || known[name] {
			continue
		}
		out = append(out, Unknown{Name: name, Suggestion: suggest(name, names)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Warning is the unknown variable as one sentence for the user.
func (u Unknown) Warning(command string) string {
	s := u.Name + " is set but " + command + " does not read it"
	if u.Suggestion != "" {
		s += "; did you mean " + u.Suggestion + "?"
	}
	return s
}

// suggest returns the known name closest to name, or "" when none is close:
// within a third of the name's length in edits, or the same name without a
// middle part (DKTSCORE_INPUT_TOPIC for DKTSCORE_KAFKA_INPUT_TOPIC).
func suggest(name string, known []string) string {
	upper := strings.ToUpper(name)
	rest := strings.TrimPrefix(upper, Prefix)
	best, bestDist := "", len(upper)
	for _, k := range known {
		if d := editDistance(upper, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist <= max(2, len(rest)/3) {
		return best
	}
	for _, k := range known {
		if strings.HasSuffix(k, "_"+rest) || strings.HasSuffix(rest, "_"+strings.TrimPrefix(k, Prefix)) {
			return k
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b (bytes; the names
// are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
