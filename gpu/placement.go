package gpu

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Environment variables the placement is configured by, and that each child
// worker process is given. cmd parses them; this package only names them so
// that errors and child environments agree.
const (
	EnvGPUs           = "DKTSCORE_GPUS"
	EnvMemoryFraction = "DKTSCORE_GPU_MEMORY_FRACTION"
	EnvAllowGrowth    = "DKTSCORE_GPU_ALLOW_GROWTH"
)

// ErrNoSuchDevice is wrapped when DKTSCORE_GPUS names a GPU that discovery did not find.
var ErrNoSuchDevice = errors.New("no such GPU")

// Selection is a parsed DKTSCORE_GPUS: "all" (also ""), "none", or a list of
// nvidia-smi indices such as "0,2".
type Selection struct {
	All     bool
	None    bool
	Indices []int
}

// ParseSelection parses DKTSCORE_GPUS.
func ParseSelection(s string) (Selection, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "", "all":
		return Selection{All: true}, nil
	case "none", "cpu":
		return Selection{None: true}, nil
	}
	var sel Selection
	var errs []error
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		n, err := strconv.Atoi(part)
		switch {
		case err != nil || n < 0:
			errs = append(errs, fmt.Errorf("%s=%q: %q is not a GPU index; use all, none, or nvidia-smi indices like 0,2", EnvGPUs, s, part))
		case slices.Contains(sel.Indices, n):
			errs = append(errs, fmt.Errorf("%s=%q: GPU %d is listed twice; each GPU runs one worker process", EnvGPUs, s, n))
		default:
			sel.Indices = append(sel.Indices, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Selection{}, err
	}
	return sel, nil
}

// String renders the selection as DKTSCORE_GPUS would spell it.
func (s Selection) String() string {
	switch {
	case s.None:
		return "none"
	case s.All:
		return "all"
	}
	parts := make([]string, len(s.Indices))
	for i, n := range s.Indices {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// Placement is one worker process: the GPU it owns (nil for a CPU worker) and
// how much of that GPU's memory its TensorFlow takes.
type Placement struct {
	Device         *Device
	MemoryFraction float64
	AllowGrowth    bool
}

// CPU reports whether the placement runs on the CPU only.
func (p Placement) CPU() bool { return p.Device == nil }

// Name is a short label for logs, metrics and the supervisor: "gpu2" or "cpu".
func (p Placement) Name() string {
	if p.Device == nil {
		return "cpu"
	}
	return "gpu" + strconv.Itoa(p.Device.Index)
}

// SessionConfig returns base with this placement's GPU options filled in. It is
// for the process that runs TensorFlow, so Device.Ordinal must be as that
// process sees it: a child started with ChildEnv discovers its one GPU as
// ordinal 0, and visible_device_list is "0".
//
// A CPU placement hides the GPUs from the session (device_count GPU=0): a
// DKTSCORE_GPUS=none worker on a GPU host must not take GPU memory.
func (p Placement) SessionConfig(base SessionConfig) SessionConfig {
	if p.Device == nil {
		base.VisibleDevices = ""
		base.MemoryFraction = 0
		base.AllowGrowth = false
		base.HideGPUs = true
		return base
	}
	base.VisibleDevices = strconv.Itoa(p.Device.Ordinal)
	base.MemoryFraction = p.MemoryFraction
	base.AllowGrowth = p.AllowGrowth
	base.HideGPUs = false
	return base
}

// ChildEnv is the environment (KEY=VALUE, to append to the parent's) of the
// worker process that runs this placement.
//
// Decision: each child is isolated with CUDA_VISIBLE_DEVICES=<GPU UUID>, not by
// TensorFlow's visible_device_list alone. CUDA then shows the child exactly one
// device, as ordinal 0, so the child cannot create a context (and take memory)
// on its siblings' GPUs, and nvidia-smi attributes memory to the right process.
// The UUID is used rather than the index because CUDA numbers devices fastest
// first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, while nvidia-smi (and
// DKTSCORE_GPUS) number them in PCI bus order; the order is set too, for any
// numeric CUDA_VISIBLE_DEVICES a user sets further down. The child keeps
// DKTSCORE_GPUS=<nvidia-smi index> — its discovery applies CUDA_VISIBLE_DEVICES,
// finds that index at ordinal 0, and its session says visible_device_list "0".
//
// A CPU child gets CUDA_VISIBLE_DEVICES=-1 (no device) and DKTSCORE_GPUS=none.
func (p Placement) ChildEnv() []string {
	if p.Device == nil {
		return []string{
			"CUDA_VISIBLE_DEVICES=-1",
			EnvGPUs + "=none",
		}
	}
	visible := p.Device.UUID
	if visible == "" {
		visible = strconv.Itoa(p.Device.Index)
	}
	return []string{
		"CUDA_DEVICE_ORDER=PCI_BUS_ID",
		"CUDA_VISIBLE_DEVICES=" + visible,
		EnvGPUs + "=" + strconv.Itoa(p.Device.Index),
		EnvMemoryFraction + "=" + strconv.FormatFloat(p.MemoryFraction, 'g', -1, 64),
		EnvAllowGrowth + "=" + strconv.FormatBool(p.AllowGrowth),
	}
}

// Plan turns the discovered devices and the configuration into worker
// processes: one per selected GPU (TensorFlow's GPU options are process-wide,
// so GPUs cannot be split between sessions of one process), or a single CPU
// worker when no GPU is selected or found. memoryFraction is
// per_process_gpu_memory_fraction, in (0, 1], or 0 for TensorFlow's default
// (nearly all of the GPU). Every problem is reported in one error.
func Plan(devices []Device, selection Selection, memoryFraction float64, allowGrowth bool) ([]Placement, error) {
	var errs []error
	if math.IsNaN(memoryFraction) || memoryFraction < 0 || memoryFraction > 1 {
		errs = append(errs, fmt.Errorf("%s=%v is outside (0, 1]; set e.g. 0.9 (of each GPU's memory), or 0 for TensorFlow's default", EnvMemoryFraction, memoryFraction))
	}
	var chosen []Device
	switch {
	case selection.None:
	case selection.All:
		chosen = devices
	default:
		for _, n := range selection.Indices {
			i := slices.IndexFunc(devices, func(d Device) bool { return d.Index == n })
			if i < 0 {
				errs = append(errs, fmt.Errorf("%s=%s: GPU %d: %w; found %s; use one of those, all, or none",
					EnvGPUs, selection, n, ErrNoSuchDevice, describe(devices)))
				continue
			}
			chosen = append(chosen, devices[i])
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(chosen) == 0 {
		return []Placement{{}}, nil
	}
	plan := make([]Placement, len(chosen))
	for i := range chosen {
		d := chosen[i]
		plan[i] = Placement{Device: &d, MemoryFraction: memoryFraction, AllowGrowth: allowGrowth}
	}
	return plan, nil
}

func describe(devices []Device) string {
	if len(devices) == 0 {
		return "no GPU"
	}
	parts := make([]string, len(devices))
	for i, d := range devices {
		parts[i] = fmt.Sprintf("%d (%s, %d MiB)", d.Index, d.Name, d.MemoryMiB)
	}
	return "GPUs " + strings.Join(parts, ", ")
}
