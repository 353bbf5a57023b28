package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Device is one NVIDIA GPU as nvidia-smi reports it.
type Device struct {
	// Index is nvidia-smi's index, in PCI bus order. DKTSCORE_GPUS names devices by it.
	Index int
	// UUID ("GPU-…") is stable across reboots and renumbering; child processes are
	// pinned by it.
	UUID string
	Name string
	// MemoryMiB is the total memory.
	MemoryMiB int64
	// Ordinal is the device's number as CUDA (and so TensorFlow's
	// visible_device_list) sees it from this process: its position among the
	// devices CUDA_VISIBLE_DEVICES lets through, or Index when the variable is unset.
	Ordinal int
}

// DiscoverOptions override what discovery reads; the zero value is right in production.
type DiscoverOptions struct {
	// NvidiaSMI is the nvidia-smi executable; "" looks it up on PATH.
	NvidiaSMI string
	// CUDAVisibleDevices is the CUDA_VISIBLE_DEVICES to apply; nil reads this
	// process's environment. Point to "" to say "set, and empty" (no GPU visible).
	CUDAVisibleDevices *string
	// Timeout bounds the nvidia-smi call (default 10s): a wedged driver must not
	// hang the worker's start.
	Timeout time.Duration
}

// Discovery says what was found and, when nothing was, why.
type Discovery struct {
	Devices []Device
	// CPUOnlyReason is set when no GPU can be used: no nvidia-smi, no driver,
	// or CUDA_VISIBLE_DEVICES hides every device. It is for the start-up log.
	CPUOnlyReason string
}

// Discover lists the GPUs this process can use. A host without nvidia-smi, or
// whose driver is not loaded ("NVIDIA-SMI has failed …", non-zero exit), is a
// CPU-only host: that is a Discovery with no devices and a reason, not an error.
// Errors are reserved for output that cannot be parsed, which means nvidia-smi
// answered something other than what was asked and guessing would be wrong.
func Discover(ctx context.Context, opts DiscoverOptions) (Discovery, error) {
	smi := opts.NvidiaSMI
	if smi == "" {
		path, err := exec.LookPath("nvidia-smi")
		if err != nil {
			return Discovery{CPUOnlyReason: "nvidia-smi not found on PATH (no NVIDIA driver installed)"}, nil
		}
		smi = path
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, smi, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
			return Discovery{CPUOnlyReason: fmt.Sprintf("%s did not answer within %v (driver wedged?)", smi, timeout)}, nil
		}
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return Discovery{CPUOnlyReason: fmt.Sprintf("%s not found (no NVIDIA driver installed)", smi)}, nil
		}
		if ctx.Err() != nil {
			return Discovery{}, ctx.Err()
		}
		msg := firstLine(stderr.String())
		if msg == "" {
			msg = firstLine(stdout.String()) // nvidia-smi prints "NVIDIA-SMI has failed…" on stdout
		}
		return Discovery{CPUOnlyReason: fmt.Sprintf("%s failed (%v): %s", smi, err, msg)}, nil
	}
	devices, err := parseQueryGPU(stdout.String())
	if err != nil {
		return Discovery{}, fmt.Errorf("gpu: parse output of %s --query-gpu: %w", smi, err)
	}

	mask, masked := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	if opts.CUDAVisibleDevices != nil {
		mask, masked = *opts.CUDAVisibleDevices, true
	}
	if masked {
		devices = applyCUDAVisibleDevices(devices, mask)
	}
	d := Discovery{Devices: devices}
	switch {
	case len(devices) == 0 && masked:
		d.CPUOnlyReason = fmt.Sprintf("CUDA_VISIBLE_DEVICES=%q hides every GPU", mask)
	case len(devices) == 0:
		d.CPUOnlyReason = "nvidia-smi lists no GPU"
	}
	return d, nil
}

// parseQueryGPU reads "index, uuid, name, memory.total" lines.
func parseQueryGPU(out string) ([]Device, error) {
	var devices []Device
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fields := strings.Split(line, ",")
		if len(fields) != 4 {
			return nil, fmt.Errorf("line %d %q: want 4 comma-separated fields (index, uuid, name, memory.total)", n+1, line)
		}
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		index, err := strconv.Atoi(fields[0])
		if err != nil || index < 0 {
			return nil, fmt.Errorf("line %d %q: index %q is not a GPU index", n+1, line, fields[0])
		}
		// memory.total is "[N/A]" on some virtualised GPUs; it is informational only.
		mem, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			mem = 0
		}
		devices = append(devices, Device{Index: index, UUID: fields[1], Name: fields[2], MemoryMiB: mem, Ordinal: index})
	}
	return devices, nil
}

// applyCUDAVisibleDevices keeps the devices CUDA will show this process, in the
// order the variable lists them, and numbers them as CUDA does (0, 1, …).
// Entries are indices or UUIDs (or UUID prefixes, as CUDA accepts); CUDA stops
// at the first entry that matches nothing, and so does this. Numeric entries are
// matched against nvidia-smi's PCI-bus-order index, which is CUDA's order only
// under CUDA_DEVICE_ORDER=PCI_BUS_ID: the images and the supervisor set it.
func applyCUDAVisibleDevices(all []Device, mask string) []Device {
	var visible []Device
	seen := map[int]bool{}
	for _, entry := range strings.Split(mask, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			break
		}
		found := -1
		n, numErr := strconv.Atoi(entry)
		for i, d := range all {
			if numErr == nil {
				if d.Index == n {
					found = i
				}
			} else if strings.HasPrefix(d.UUID, entry) || strings.HasPrefix(d.UUID, "GPU-"+entry) {
				found = i
			}
			if found >= 0 {
				break
			}
		}
		if found < 0 || seen[found] {
			break
		}
		seen[found] = true
		d := all[found]
		d.Ordinal = len(visible)
		visible = append(visible, d)
	}
	return visible
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
