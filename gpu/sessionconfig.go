// Package gpu decides where TensorFlow runs: which devices a process sees and how
// much of their memory it takes. It produces the session ConfigProto; it never
// runs a model.
package gpu

import (
	"errors"
	"fmt"
	"math"
	"runtime"

	"google.golang.org/protobuf/encoding/protowire"
)

// SessionConfig is everything dktscore sets in TensorFlow's ConfigProto.
type SessionConfig struct {
	// VisibleDevices is the CUDA device list this process may use ("0", "0,2");
	// empty means every device TensorFlow finds.
	VisibleDevices string
	// MemoryFraction is per_process_gpu_memory_fraction in (0, 1]; 0 leaves TF's default.
	MemoryFraction float64
	// AllowGrowth makes TF allocate GPU memory on demand instead of up front.
	AllowGrowth bool
	// IntraOpThreads and InterOpThreads size TF's thread pools; 0 lets TF pick
	// (one per core), which oversubscribes the CPU when several sessions run.
	IntraOpThreads int
	InterOpThreads int
	// DisableSoftPlacement pins ops strictly; by default ops without a GPU kernel,
	// or a GPU-pinned graph on a host without one, fall back to the CPU.
	DisableSoftPlacement bool
	// HideGPUs sets device_count {"GPU": 0}: the session creates no GPU device,
	// so a CPU worker on a GPU host takes no GPU memory. It excludes the GPU options.
	HideGPUs bool
}

// Validate returns every problem in one error.
func (c SessionConfig) Validate() error {
	var errs []error
	if c.MemoryFraction < 0 || c.MemoryFraction > 1 {
		errs = append(errs, fmt.Errorf("GPU memory fraction %v is outside (0, 1]; set e.g. 0.9, or 0 for TensorFlow's default", c.MemoryFraction))
	}
	if c.IntraOpThreads < 0 {
		errs = append(errs, fmt.Errorf("intra-op threads %d is negative; use 0 to let TensorFlow choose", c.IntraOpThreads))
	}
	if c.InterOpThreads < 0 {
		errs = append(errs, fmt.Errorf("inter-op threads %d is negative; use 0 to let TensorFlow choose", c.InterOpThreads))
	}
	if c.HideGPUs && (c.VisibleDevices != "" || c.MemoryFraction != 0 || c.AllowGrowth) {
		errs = append(errs, errors.New("GPUs are hidden (CPU worker) but GPU options are set; drop one or the other"))
	}
	return errors.Join(errs...)
}

// ThreadsPerSession is the intra-op thread count for each of sessions
// concurrent sessions: requested when set, else the machine's cores split
// between them so that sessions × threads does not oversubscribe the CPU.
func ThreadsPerSession(requested, sessions int) int {
	if requested > 0 {
		return requested
	}
	if sessions < 1 {
		sessions = 1
	}
	return max(1, runtime.NumCPU()/sessions)
}

// Field numbers from tensorflow/core/protobuf/config.proto. Encoding them here
// keeps this package free of the TensorFlow bindings; the tests decode the bytes
// with TensorFlow's generated ConfigProto to prove they match.
const (
	configIntraOpThreads     = 2
	configDeviceCount        = 1
	configInterOpThreads     = 5
	configGPUOptions         = 6
	configAllowSoftPlacement = 7
	gpuMemoryFraction        = 1
	gpuAllowGrowth           = 4
	gpuVisibleDeviceList     = 5
)

// ConfigProto returns the serialized tensorflow.ConfigProto for the session.
func (c SessionConfig) ConfigProto() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var gpuOpts []byte
	if c.MemoryFraction > 0 {
		gpuOpts = protowire.AppendTag(gpuOpts, gpuMemoryFraction, protowire.Fixed64Type)
		gpuOpts = protowire.AppendFixed64(gpuOpts, math.Float64bits(c.MemoryFraction))
	}
	if c.AllowGrowth {
		gpuOpts = appendBool(gpuOpts, gpuAllowGrowth, true)
	}
	if c.VisibleDevices != "" {
		gpuOpts = protowire.AppendTag(gpuOpts, gpuVisibleDeviceList, protowire.BytesType)
		gpuOpts = protowire.AppendString(gpuOpts, c.VisibleDevices)
	}

	var out []byte
	if c.IntraOpThreads > 0 {
		out = protowire.AppendTag(out, configIntraOpThreads, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(c.IntraOpThreads))
	}
	if c.InterOpThreads > 0 {
		out = protowire.AppendTag(out, configInterOpThreads, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(c.InterOpThreads))
	}
	if c.HideGPUs {
		// map<string, int32> device_count: one entry message {1: key, 2: value}.
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, "GPU")
		entry = protowire.AppendTag(entry, 2, protowire.VarintType)
		entry = protowire.AppendVarint(entry, 0)
		out = protowire.AppendTag(out, configDeviceCount, protowire.BytesType)
		out = protowire.AppendBytes(out, entry)
	}
	if len(gpuOpts) > 0 {
		out = protowire.AppendTag(out, configGPUOptions, protowire.BytesType)
		out = protowire.AppendBytes(out, gpuOpts)
	}
	out = appendBool(out, configAllowSoftPlacement, !c.DisableSoftPlacement)
	return out, nil
}

func appendBool(b []byte, field protowire.Number, v bool) []byte {
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, protowire.EncodeBool(v))
}
