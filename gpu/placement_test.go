package gpu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corepb "github.com/wamuir/graft/tensorflow/core/protobuf/for_core_protos_go_proto"
	"google.golang.org/protobuf/proto"
)

// Real nvidia-smi output for the query (a 4-GPU host; one virtualised GPU
// reports [N/A] memory), and its answer on a host whose driver is not loaded.
const (
	fourGPUs = `0, GPU-6f1a0c2e-1111-2222-3333-444444444444, NVIDIA H100 80GB HBM3, 81559
1, GPU-7a2b1d3f-5555-6666-7777-888888888888, NVIDIA H100 80GB HBM3, 81559
2, GPU-8b3c2e40-9999-aaaa-bbbb-cccccccccccc, NVIDIA H100 80GB HBM3, 81559
3, GPU-9c4d3f51-dddd-eeee-ffff-000000000000, NVIDIA A10G, [N/A]
`
	noDriver = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n"
)

// fakeSMI writes an executable nvidia-smi that checks it was asked the right
// query, prints stdout and exits with code.
func fakeSMI(t *testing.T, stdout string, code int) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.txt")
	if err := os.WriteFile(out, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
[ "$1" = "--query-gpu=index,uuid,name,memory.total" ] && [ "$2" = "--format=csv,noheader,nounits" ] || { echo "unexpected args: $*" >&2; exit 9; }
cat '` + out + `'
exit ` + string(rune('0'+code)) + "\n"
	path := filepath.Join(dir, "nvidia-smi")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func discover(t *testing.T, opts DiscoverOptions) Discovery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if opts.CUDAVisibleDevices == nil {
		// nil means "read the environment": make it unset, whatever this machine has.
		t.Setenv("CUDA_VISIBLE_DEVICES", "")
		os.Unsetenv("CUDA_VISIBLE_DEVICES")
	}
	d, err := Discover(ctx, opts)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return d
}

func strp(s string) *string { return &s }

func TestDiscoverParsesNvidiaSMI(t *testing.T) {
	d := discover(t, DiscoverOptions{NvidiaSMI: fakeSMI(t, fourGPUs, 0)})
	if d.CPUOnlyReason != "" || len(d.Devices) != 4 {
		t.Fatalf("got %+v, want 4 devices", d)
	}
	want := Device{Index: 2, UUID: "GPU-8b3c2e40-9999-aaaa-bbbb-cccccccccccc", Name: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, Ordinal: 2}
	if d.Devices[2] != want {
		t.Errorf("device 2 = %+v, want %+v", d.Devices[2], want)
	}
	if d.Devices[3].MemoryMiB != 0 || d.Devices[3].Name != "NVIDIA A10G" {
		t.Errorf("[N/A] memory: got %+v", d.Devices[3])
	}
}

// A host without a driver, or without nvidia-smi, is a CPU host: no error.
func TestDiscoverWithoutDriverIsCPUOnly(t *testing.T) {
	tests := []struct {
		name, smi, reason string
	}{
		{"driver not loaded", fakeSMI(t, noDriver, 9), "NVIDIA-SMI has failed"},
		{"no nvidia-smi", filepath.Join(t.TempDir(), "nvidia-smi"), "not found"},
		{"no gpu listed", fakeSMI(t, "", 0), "lists no GPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := discover(t, DiscoverOptions{NvidiaSMI: tt.smi})
			if len(d.Devices) != 0 || !strings.Contains(d.CPUOnlyReason, tt.reason) {
				t.Fatalf("got %+v, want CPU-only because %q", d, tt.reason)
			}
		})
	}
	t.Run("not on PATH", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		d := discover(t, DiscoverOptions{})
		if len(d.Devices) != 0 || !strings.Contains(d.CPUOnlyReason, "not found on PATH") {
			t.Fatalf("got %+v", d)
		}
	})
}

func TestDiscoverTimesOutAsCPUOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nvidia-smi")
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := discover(t, DiscoverOptions{NvidiaSMI: path, Timeout: 200 * time.Millisecond})
	if len(d.Devices) != 0 || !strings.Contains(d.CPUOnlyReason, "did not answer") {
		t.Fatalf("got %+v", d)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("a wedged nvidia-smi held discovery for %v", time.Since(start))
	}
}

func TestDiscoverRejectsUnexpectedOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Discover(ctx, DiscoverOptions{NvidiaSMI: fakeSMI(t, "0, GPU-x, H100\n", 0), CUDAVisibleDevices: strp("0")})
	if err == nil || !strings.Contains(err.Error(), "want 4 comma-separated fields") {
		t.Fatalf("err = %v", err)
	}
}

// CUDA_VISIBLE_DEVICES decides what CUDA shows the process, and so the ordinals
// TensorFlow's visible_device_list must use.
func TestDiscoverAppliesCUDAVisibleDevices(t *testing.T) {
	smi := fakeSMI(t, fourGPUs, 0)
	tests := []struct {
		mask    string
		indices []int // nvidia-smi indices kept, in CUDA order
		cpuOnly bool
	}{
		{"GPU-8b3c2e40-9999-aaaa-bbbb-cccccccccccc", []int{2}, false},
		{"GPU-8b3c2e40", []int{2}, false}, // CUDA accepts UUID prefixes
		{"3,1", []int{3, 1}, false},
		{"1,7,2", []int{1}, false}, // CUDA stops at the first invalid entry
		{"-1", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.mask, func(t *testing.T) {
			d := discover(t, DiscoverOptions{NvidiaSMI: smi, CUDAVisibleDevices: strp(tt.mask)})
			var got []int
			for i, dev := range d.Devices {
				got = append(got, dev.Index)
				if dev.Ordinal != i {
					t.Errorf("device %d has ordinal %d, want %d", dev.Index, dev.Ordinal, i)
				}
			}
			if !slices.Equal(got, tt.indices) || (d.CPUOnlyReason != "") != tt.cpuOnly {
				t.Fatalf("got %v (reason %q), want %v", got, d.CPUOnlyReason, tt.indices)
			}
		})
	}
}

func TestParseSelection(t *testing.T) {
	tests := []struct {
		in      string
		want    Selection
		wantErr string
	}{
		{"all", Selection{All: true}, ""},
		{"", Selection{All: true}, ""},
		{" NONE ", Selection{None: true}, ""},
		{"0,2", Selection{Indices: []int{0, 2}}, ""},
		{" 3 ", Selection{Indices: []int{3}}, ""},
		{"0,x", Selection{}, `DKTSCORE_GPUS="0,x": "x" is not a GPU index`},
		{"-1", Selection{}, `"-1" is not a GPU index`},
		{"1,1", Selection{}, "GPU 1 is listed twice"},
		{"0,,1", Selection{}, `"" is not a GPU index`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSelection(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.All != tt.want.All || got.None != tt.want.None || !slices.Equal(got.Indices, tt.want.Indices) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func testDevices(t *testing.T) []Device {
	d := discover(t, DiscoverOptions{NvidiaSMI: fakeSMI(t, fourGPUs, 0), CUDAVisibleDevices: strp("0,1,2,3")})
	return d.Devices
}

func TestPlan(t *testing.T) {
	devices := testDevices(t)
	tests := []struct {
		name     string
		devices  []Device
		sel      string
		fraction float64
		growth   bool
		want     []string // Placement.Name per worker
	}{
		{"all gpus", devices, "all", 0.45, false, []string{"gpu0", "gpu1", "gpu2", "gpu3"}},
		{"two of four", devices, "0,2", 0.9, true, []string{"gpu0", "gpu2"}},
		{"none on a gpu host", devices, "none", 0.9, false, []string{"cpu"}},
		{"all on a cpu host", nil, "all", 0.9, false, []string{"cpu"}},
		{"default fraction", devices, "3", 0, false, []string{"gpu3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseSelection(tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := Plan(tt.devices, sel, tt.fraction, tt.growth)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range plan {
				names = append(names, p.Name())
				if !p.CPU() && (p.MemoryFraction != tt.fraction || p.AllowGrowth != tt.growth) {
					t.Errorf("%s: fraction %v growth %v, want %v %v", p.Name(), p.MemoryFraction, p.AllowGrowth, tt.fraction, tt.growth)
				}
			}
			if !slices.Equal(names, tt.want) {
				t.Fatalf("plan %v, want %v", names, tt.want)
			}
		})
	}
}

func TestPlanReportsEveryProblem(t *testing.T) {
	devices := testDevices(t)[:2]
	sel, _ := ParseSelection("1,5,7")
	_, err := Plan(devices, sel, 1.5, false)
	if err == nil {
		t.Fatal("invalid plan accepted")
	}
	if !errors.Is(err, ErrNoSuchDevice) {
		t.Errorf("error does not wrap ErrNoSuchDevice: %v", err)
	}
	for _, want := range []string{
		"DKTSCORE_GPU_MEMORY_FRACTION=1.5 is outside (0, 1]",
		"DKTSCORE_GPUS=1,5,7: GPU 5: no such GPU; found GPUs 0 (NVIDIA H100 80GB HBM3, 81559 MiB), 1 (NVIDIA H100 80GB HBM3, 81559 MiB)",
		"GPU 7",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not say %q", err, want)
		}
	}
	sel, _ = ParseSelection("0")
	if _, err := Plan(nil, sel, 0.5, false); err == nil || !strings.Contains(err.Error(), "found no GPU") {
		t.Errorf("GPU 0 on a CPU host: err = %v", err)
	}
	for _, f := range []float64{-0.1, 1.0000001} {
		if _, err := Plan(devices, Selection{All: true}, f, false); err == nil {
			t.Errorf("fraction %v accepted", f)
		}
	}
}

// The whole path a GPU child walks: the parent plans GPU 2, starts the child
// with ChildEnv; the child discovers with that CUDA_VISIBLE_DEVICES, plans with
// the DKTSCORE_GPUS it was given, and its session asks TensorFlow for device 0
// (the only one CUDA shows it) with the parent's fraction and growth.
func TestChildSeesItsGPUAsDeviceZero(t *testing.T) {
	smi := fakeSMI(t, fourGPUs, 0)
	sel, _ := ParseSelection("0,2")
	plan, err := Plan(testDevices(t), sel, 0.7, true)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range plan[1].ChildEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	wantEnv := map[string]string{
		"CUDA_DEVICE_ORDER":            "PCI_BUS_ID",
		"CUDA_VISIBLE_DEVICES":         "GPU-8b3c2e40-9999-aaaa-bbbb-cccccccccccc",
		"DKTSCORE_GPUS":                "2",
		"DKTSCORE_GPU_MEMORY_FRACTION": "0.7",
		"DKTSCORE_GPU_ALLOW_GROWTH":    "true",
	}
	for k, v := range wantEnv {
		if env[k] != v {
			t.Errorf("child env %s=%q, want %q", k, env[k], v)
		}
	}

	mask := env["CUDA_VISIBLE_DEVICES"]
	child := discover(t, DiscoverOptions{NvidiaSMI: smi, CUDAVisibleDevices: &mask})
	childSel, err := ParseSelection(env["DKTSCORE_GPUS"])
	if err != nil {
		t.Fatal(err)
	}
	childPlan, err := Plan(child.Devices, childSel, 0.7, true)
	if err != nil || len(childPlan) != 1 {
		t.Fatalf("child plan %+v, %v", childPlan, err)
	}
	raw, err := childPlan[0].SessionConfig(SessionConfig{IntraOpThreads: 4}).ConfigProto()
	if err != nil {
		t.Fatal(err)
	}
	got := new(corepb.ConfigProto)
	if err := proto.Unmarshal(raw, got); err != nil {
		t.Fatal(err)
	}
	want := &corepb.ConfigProto{IntraOpParallelismThreads: 4, AllowSoftPlacement: true,
		GpuOptions: &corepb.GPUOptions{VisibleDeviceList: "0", PerProcessGpuMemoryFraction: 0.7, AllowGrowth: true}}
	if !proto.Equal(got, want) {
		t.Fatalf("child ConfigProto %v, want %v", got, want)
	}
}

func TestCPUPlacementHidesGPUs(t *testing.T) {
	p := Placement{}
	if !slices.Equal(p.ChildEnv(), []string{"CUDA_VISIBLE_DEVICES=-1", "DKTSCORE_GPUS=none"}) {
		t.Errorf("CPU child env %v", p.ChildEnv())
	}
	raw, err := p.SessionConfig(SessionConfig{VisibleDevices: "1", MemoryFraction: 0.5}).ConfigProto()
	if err != nil {
		t.Fatal(err)
	}
	got := new(corepb.ConfigProto)
	if err := proto.Unmarshal(raw, got); err != nil {
		t.Fatal(err)
	}
	if got.GetGpuOptions() != nil || got.GetDeviceCount()["GPU"] != 0 || len(got.GetDeviceCount()) != 1 {
		t.Fatalf("CPU placement ConfigProto %v", got)
	}
}

func TestDiscoverReadsCUDAVisibleDevicesFromEnvironment(t *testing.T) {
	t.Setenv("CUDA_VISIBLE_DEVICES", "GPU-9c4d3f51")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := Discover(ctx, DiscoverOptions{NvidiaSMI: fakeSMI(t, fourGPUs, 0)})
	if err != nil || len(d.Devices) != 1 || d.Devices[0].Index != 3 || d.Devices[0].Ordinal != 0 {
		t.Fatalf("got %+v, %v; want GPU 3 as ordinal 0", d, err)
	}
}
